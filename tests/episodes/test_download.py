"""download/check: checksum verification of shipped files, atomic fetch from file:// URLs, no network."""

import hashlib
import shutil

import pytest

from engramlab.episodes import download as dl
from engramlab.errors import BadConfig, DataError


def test_check_reports_every_shipped_file_ok(shared_data):
    status = dict(dl.check(shared_data))
    shipped = [
        "omniglot/images_background_small1.zip",
        "omniglot/images_background_small2.zip",
        "omniglot/one_shot_runs.zip",
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
        "binarized-mnist/binarized_mnist_train.mat",
        "binarized-mnist/binarized_mnist_valid.mat",
        "binarized-mnist/binarized_mnist_test.mat",
        *[
            f"fashion-mnist/{k}-{t}-idx{n}-ubyte.gz"
            for k in ("train", "t10k")
            for t, n in (("images", 3), ("labels", 1))
        ],
    ]
    assert {p: status[p] for p in shipped} == {p: "ok" for p in shipped}
    assert status["mnist/train-images-idx3-ubyte.gz"] == "missing"


def test_check_flags_a_corrupted_copy_as_mismatch(shared_data, tmp_path):
    (tmp_path / "mnist").mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(shared_data / "mnist" / name, tmp_path / "mnist" / name)
    with open(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01\x02")
    status = dict(dl.check(tmp_path, ["mnist"]))
    assert status["mnist/t10k-images-idx3-ubyte.gz"] == "ok"
    assert status["mnist/t10k-labels-idx1-ubyte.gz"] == "mismatch"


def fake_source(monkeypatch, tmp_path, payload, sha=None, md5=None, name="toy"):
    src = tmp_path / "remote.bin"
    src.write_bytes(payload)
    remote = dl.RemoteFile("toy/file.bin", (src.as_uri(),), (sha,) if sha else (), md5)
    monkeypatch.setitem(dl.SOURCES, name, (remote,))
    return remote


def test_download_fetches_verifies_and_renames_into_place(monkeypatch, tmp_path):
    payload = b"engram" * 1000
    fake_source(monkeypatch, tmp_path, payload, sha=hashlib.sha256(payload).hexdigest())
    data = tmp_path / "data"
    paths = dl.download("toy", data, progress=False)
    assert paths == [data / "toy" / "file.bin"] and paths[0].read_bytes() == payload
    assert [p.name for p in (data / "toy").iterdir()] == ["file.bin"]  # no temp file left
    assert dict(dl.check(data, ["toy"])) == {"toy/file.bin": "ok"}


def test_download_accepts_the_canonical_md5_when_no_sha256_is_pinned(monkeypatch, tmp_path):
    payload = b"md5 only"
    fake_source(monkeypatch, tmp_path, payload, md5=hashlib.md5(payload).hexdigest())
    assert dl.download("toy", tmp_path / "data", progress=False)[0].read_bytes() == payload


def test_a_checksum_mismatch_leaves_nothing_behind(monkeypatch, tmp_path):
    fake_source(monkeypatch, tmp_path, b"tampered", sha="0" * 64)
    with pytest.raises(DataError, match="checksum mismatch"):
        dl.download("toy", tmp_path / "data", progress=False)
    assert list((tmp_path / "data" / "toy").iterdir()) == []


def test_an_unreachable_source_raises_data_error_naming_the_file(monkeypatch, tmp_path):
    remote = dl.RemoteFile("toy/file.bin", ((tmp_path / "nowhere.bin").as_uri(),), ("0" * 64,))
    monkeypatch.setitem(dl.SOURCES, "toy", (remote,))
    with pytest.raises(DataError, match="toy/file.bin"):
        dl.download("toy", tmp_path / "data", progress=False)


def test_an_unknown_dataset_raises_bad_config():
    with pytest.raises(BadConfig, match="no download source"):
        dl.download("imagenet", "/nonexistent", progress=False)


def test_every_source_has_an_https_or_http_url_and_a_checksum_where_shipped():
    for name, files in dl.SOURCES.items():
        for f in files:
            assert f.urls and all(u.startswith(("https://", "http://")) for u in f.urls), name
    assert all(f.sha256 for f in dl.SOURCES["binarized_mnist"] + dl.SOURCES["fashion_mnist"])


def test_archives_are_extracted_after_verification(monkeypatch, tmp_path):
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    payload = buf.getvalue()
    src = tmp_path / "c.tar.gz"
    src.write_bytes(payload)
    remote = dl.RemoteFile(
        "cifar10/c.tar.gz", (src.as_uri(),), (hashlib.sha256(payload).hexdigest(),), extract="cifar10"
    )
    monkeypatch.setitem(dl.SOURCES, "toy", (remote,))
    dl.download("toy", tmp_path / "data", progress=False)
    assert (tmp_path / "data" / "cifar10" / "cifar-10-batches-py" / "readme.html").read_bytes() == b"hello"
