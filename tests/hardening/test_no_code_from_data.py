"""No reader runs code from a data file or reads outside its data directory.

A crafted CIFAR-10 batch whose pickle would run a command (os.system, exec, subprocess, even a
numpy function that writes a file) raises DataError naming the file, and the command never runs
(its marker file stays absent). The same payload *does* run under plain ``pickle.load``, which
shows the test files are really malicious. Symlinks out of the data directory, FIFOs, zip entries
with ``..`` or absolute names and unsafe tar members are refused.
"""

import io
import os
import pickle
import shlex
import subprocess
import tarfile
import zipfile

import numpy as np
import pytest
import torch

from engramlab.episodes import download
from engramlab.episodes.datasets import load_dataset, read_cifar_batch
from engramlab.episodes.safeload import load_plain_pickle, zip_member_ok
from engramlab.errors import DataError


class Payload:
    """Pickles to a call of ``func(*args)``: what an attacker's data file would hold."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def payloads(marker):
    quoted = shlex.quote(str(marker))
    return {
        "os.system": Payload(os.system, f"touch {quoted}"),
        "exec": Payload(exec, f"open({str(marker)!r}, 'w').write('ran')"),
        "subprocess": Payload(subprocess.call, ["touch", str(marker)]),
        "numpy.save": Payload(np.save, str(marker), np.zeros(1)),
    }


def cifar_dir(root):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    return folder


def plain_batch(n=4, seed=0):
    rng = np.random.default_rng(seed)
    return {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}


@pytest.mark.parametrize("kind", ["os.system", "exec", "subprocess", "numpy.save"])
@pytest.mark.parametrize("where", ["whole file", "inside labels"])
@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_crafted_cifar_pickle_raises_data_error_and_runs_nothing(tmp_path, kind, where, protocol):
    marker = tmp_path / "ran.npy"
    payload = payloads(marker)[kind]
    batch = payload if where == "whole file" else {**plain_batch(), b"labels": [0, payload, 1, 2]}
    path = cifar_dir(tmp_path / "data") / "test_batch"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))

    with pytest.raises(DataError, match="test_batch") as info:
        load_dataset("cifar10", "test", data_dir=tmp_path / "data")
    assert "refusing to load global" in str(info.value) and "engram data check" in str(info.value)
    assert not marker.exists()

    if kind == "os.system" and where == "whole file" and protocol == 2:  # the file really is an attack
        pickle.loads(path.read_bytes())
        assert marker.exists()


def test_an_array_of_python_objects_is_refused(tmp_path):
    path = cifar_dir(tmp_path) / "test_batch"
    path.write_bytes(pickle.dumps({b"data": np.array([1, "x"], dtype=object), b"labels": [0]}, protocol=2))
    with pytest.raises(DataError, match="test_batch.*Python objects"):
        read_cifar_batch(path)


def python2_style(batch):
    """A protocol-2 pickle naming numpy.core (as the Python 2 CIFAR-10 files do)."""
    raw = pickle.dumps(batch, protocol=2)
    assert b"numpy._core.multiarray" in raw or b"numpy.core.multiarray" in raw
    return raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")  # GLOBAL names end at '\n'


@pytest.mark.parametrize("protocol", ["python2", 4, 5])
def test_plain_cifar_batches_still_load_exactly(tmp_path, protocol):
    folder = cifar_dir(tmp_path)
    batches = {name: plain_batch(n=5, seed=i) for i, name in enumerate(("data_batch_1", "test_batch"))}
    for name, batch in batches.items():
        batch[b"batch_label"] = b"testing batch 1 of 1"
        batch[b"filenames"] = [b"a.png"] * 5
        raw = python2_style(batch) if protocol == "python2" else pickle.dumps(batch, protocol=protocol)
        (folder / name).write_bytes(raw)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    expected = torch.from_numpy(batches["test_batch"][b"data"].reshape(-1, 3, 32, 32)).float() / 255
    assert torch.equal(test.patterns, expected) and test.labels.tolist() == [0, 1, 2, 3, 4]
    train, val = (load_dataset("cifar10", s, data_dir=tmp_path) for s in ("train", "val"))
    assert torch.cat([train.patterns, val.patterns]).flatten(1).mul(255).round().byte().tolist() == (
        batches["data_batch_1"][b"data"].tolist()
    )


def test_load_plain_pickle_keeps_plain_containers():
    data = {"a": [1, 2.5, None, True], b"b": (b"x", "y"), "arr": np.arange(6, dtype=np.int16).reshape(2, 3)}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        out = load_plain_pickle(io.BytesIO(pickle.dumps(data, protocol=protocol)))
        assert out["a"] == data["a"] and out[b"b"] == data[b"b"] and np.array_equal(out["arr"], data["arr"])


# ----------------------------------------------------------------------------- paths out of the data dir


def write_idx_gz(path, array):
    import gzip
    import struct

    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def make_mnist_test(folder):
    write_idx_gz(folder / "t10k-images-idx3-ubyte.gz", np.zeros((10, 28, 28)))
    write_idx_gz(folder / "t10k-labels-idx1-ubyte.gz", np.arange(10))


def test_a_symlink_out_of_the_data_dir_is_refused(tmp_path):
    make_mnist_test(tmp_path / "elsewhere")
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / "data" / "mnist" / name).symlink_to(tmp_path / "elsewhere" / name)
    with pytest.raises(DataError, match="outside the data directory"):
        load_dataset("mnist", "test", data_dir=tmp_path / "data")


def test_a_data_dir_that_is_itself_a_symlink_is_fine(tmp_path):
    make_mnist_test(tmp_path / "real" / "mnist")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert len(load_dataset("mnist", "test", data_dir=tmp_path / "link")) == 1


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    folder = cifar_dir(tmp_path)
    os.mkfifo(folder / "test_batch")
    with pytest.raises(DataError, match="not a regular file"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_an_image_folder_symlink_out_of_the_folder_is_refused(tmp_path):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(folder / f"{i}.png")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "secret.png")
    (folder / "3.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(DataError, match="3.png.*outside"):
        load_dataset("image_folder", "test", data_dir=tmp_path, image_size=8, path=folder)


def png_bytes():
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((105, 105), 255, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "bad_name",
    ["../../Evil/character01/0001_01.png", "/abs/Evil/character01/0001_01.png", "top/../Evil/character01/x.png"],
)
def test_an_omniglot_zip_entry_leaving_the_archive_is_refused(tmp_path, bad_name):
    (tmp_path / "omniglot").mkdir()
    path = tmp_path / "omniglot" / "images_background_small1.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("top/Good/character01/0001_01.png", png_bytes())
        zf.writestr(zipfile.ZipInfo(bad_name), png_bytes())
    with pytest.raises(DataError, match="images_background_small1.zip.*unsafe zip entry"):
        load_dataset("omniglot", "train", data_dir=tmp_path)


def test_zip_member_names():
    assert zip_member_ok("images_background/Greek/character01/0394_01.png")
    for bad in ("../x.png", "a/../../x.png", "/etc/x.png", "\\\\server\\x.png", "C:/x.png", "a\\..\\x.png", ""):
        assert not zip_member_ok(bad), bad


def tar_with(path, member: tarfile.TarInfo, data: bytes = b"x"):
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


@pytest.mark.parametrize("kind", ["dotdot", "symlink out", "device"])
def test_unsafe_tar_members_are_refused_and_nothing_lands_outside(tmp_path, kind):
    outside = tmp_path / "outside.txt"
    member = tarfile.TarInfo("../outside.txt" if kind == "dotdot" else "cifar/link")
    if kind == "symlink out":
        member.type, member.linkname = tarfile.SYMTYPE, str(outside)
    if kind == "device":
        member.type = tarfile.CHRTYPE
    archive = tmp_path / "a.tar.gz"
    tar_with(archive, member)
    target = tmp_path / "data" / "cifar10"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar, pytest.raises(DataError, match="a.tar.gz"):
        download._safe_extract(tar, target)
    assert not outside.exists() and not outside.is_symlink()
    assert not any(p.is_symlink() or not (p.is_file() or p.is_dir()) for p in target.rglob("*"))


def test_an_absolute_tar_member_lands_inside_the_target(tmp_path):
    outside = tmp_path / "outside.txt"
    archive = tmp_path / "a.tar.gz"
    tar_with(archive, tarfile.TarInfo(str(outside)))
    target = tmp_path / "data" / "cifar10"
    target.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        download._safe_extract(tar, target)  # the "data" filter strips the leading '/'
    assert not outside.exists()
    assert [p.name for p in target.rglob("*") if p.is_file()] == ["outside.txt"]


def huge_png_header(width, height):
    """A PNG that only declares its size (a decompression bomb as far as PIL's open() can tell)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_an_image_declaring_a_huge_size_is_a_data_error(tmp_path):
    from engramlab.evaluation.evaluate import load_images

    (tmp_path / "bomb.png").write_bytes(huge_png_header(40000, 40000))
    with pytest.raises(DataError, match="bomb.png"):
        load_images([tmp_path / "bomb.png"], (1, 8, 8))  # what `engram read --images` uses
    folder = tmp_path / "faces"
    folder.mkdir()
    (folder / "bomb.png").write_bytes(huge_png_header(40000, 40000))
    with pytest.raises(DataError, match="bomb.png"):
        load_dataset("image_folder", "test", data_dir=tmp_path, path=folder)


def test_data_check_reports_a_fifo_instead_of_hashing_it_forever(tmp_path):
    (tmp_path / "mnist").mkdir()
    os.mkfifo(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz")
    status = dict(download.check(tmp_path, ["mnist"]))
    assert status["mnist/t10k-images-idx3-ubyte.gz"] == "not-a-file"
    assert status["mnist/t10k-labels-idx1-ubyte.gz"] == "missing"


def test_a_crafted_optimizer_file_in_a_checkpoint_runs_nothing(tmp_path):
    """optimizer.pt is read with torch.load(weights_only=True): even with a matching sha256 in
    meta.json (an attacker writes both), a pickle that calls os.system is refused."""
    import json

    from engramlab.errors import CheckpointError
    from engramlab.training import checkpoint as ckpt

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    path = ckpt.save_checkpoint(tmp_path / "step-00000001", model, optimizer, {"step": 1})
    marker = tmp_path / "ran"
    torch.save({"state": Payload(os.system, f"touch {shlex.quote(str(marker))}")}, path / ckpt.OPTIMIZER_FILE)
    meta = json.loads((path / ckpt.META_FILE).read_text())
    meta["files"][ckpt.OPTIMIZER_FILE] = ckpt._sha256(path / ckpt.OPTIMIZER_FILE)
    (path / ckpt.META_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="optimizer.pt"):
        ckpt.load_optimizer(path, optimizer)
    assert not marker.exists()
