"""Dataset readers: shipped files (shapes, ranges, split sizes, disjointness), tiny self-made files,
corrupt/missing files -> DataError, the decoded-array cache, data-dir resolution."""

import gzip
import pickle
import struct
import time

import numpy as np
import pytest
import torch

from engramlab.episodes import cache, datasets
from engramlab.episodes.datasets import load_dataset, read_idx, resolve_data_dir
from engramlab.errors import BadConfig, DataError


def rows(ps):
    return {tuple(r) for r in ps.patterns.flatten(1).mul(255).round().to(torch.uint8).tolist()}


# ----------------------------------------------------------------------------- shipped files


def test_digits_splits_are_fixed_disjoint_and_in_unit_range():
    parts = {s: load_dataset("digits", s) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 1797
    assert parts["train"].pattern_shape == (1, 8, 8) and parts["train"].patterns.dtype == torch.float32
    assert all(0 <= p.patterns.min() and p.patterns.max() <= 1 for p in parts.values())
    assert parts["train"].patterns.max() == 1.0 and parts["train"].num_classes == 10
    assert torch.equal(load_dataset("digits", "test").patterns, parts["test"].patterns)
    assert "1258/180/359" in parts["val"].describe()


def test_omniglot_small_zips_split_by_alphabet_and_character(shared_data):
    parts = {s: load_dataset("omniglot", s, data_dir=shared_data) for s in ("train", "val", "test")}
    total = sum(len(p) for p in parts.values())
    assert total == 2720 + 3120 - 20 * (24 + 26)  # Greek (24) and Latin (26) characters counted once
    assert all(p.pattern_shape == (1, 28, 28) for p in parts.values())
    chars = {s: set(p.labels.tolist()) for s, p in parts.items()}
    assert (
        not (chars["train"] & chars["val"])
        and not (chars["train"] & chars["test"])
        and not (chars["val"] & chars["test"])
    )
    assert all(len(p) == 20 * p.num_classes for p in parts.values())  # 20 drawers per character
    assert "test = Korean, Tagalog" in parts["test"].describe()
    x = parts["train"].patterns
    assert 0 <= x.min() and x.max() <= 1 and 0.03 < x.mean() < 0.3  # strokes = 1 on a 0 background
    assert 0 < ((x > 0) & (x < 1)).float().mean()  # antialiased grey edges


def test_omniglot_resizes_to_32_and_binarizes_by_threshold(shared_data):
    ps = load_dataset("omniglot", "val", data_dir=shared_data, image_size=32, binarize="threshold")
    assert ps.pattern_shape == (1, 32, 32) and set(ps.patterns.unique().tolist()) == {0.0, 1.0}


def test_mnist_test_only_is_split_by_explicit_disjoint_index_ranges(shared_data):
    parts = {s: load_dataset("mnist", s, data_dir=shared_data) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8000, 1000, 1000]
    assert "only the t10k file" in parts["train"].describe().lower()
    assert parts["test"].pattern_shape == (1, 28, 28) and parts["test"].labels.max() == 9
    raw = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(parts["val"].patterns[:, 0], torch.from_numpy(raw[8000:9000]).float() / 255)


def test_fashion_mnist_uses_its_training_file(shared_data):
    train = load_dataset("fashion_mnist", "train", data_dir=shared_data)
    val = load_dataset("fashion_mnist", "val", data_dir=shared_data)
    test = load_dataset("fashion_mnist", "test", data_dir=shared_data)
    assert (len(train), len(val), len(test)) == (54000, 6000, 10000)
    assert torch.bincount(test.labels).tolist() == [1000] * 10


def test_binarized_mnist_static_reads_the_larochelle_files(shared_data):
    parts = {s: load_dataset("binarized_mnist", s, data_dir=shared_data) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [50000, 10000, 10000]
    x = parts["train"].patterns
    assert ((x == 0) | (x == 1)).all() and abs(x.mean().item() - 0.1306) < 1e-3
    # row-major 28x28: the mean image matches grayscale MNIST's, not its transpose
    mean = x.mean(0)[0]
    gray = load_dataset("mnist", "test", data_dir=shared_data).patterns.mean(0)[0]
    assert torch.corrcoef(torch.stack([mean.flatten(), gray.flatten()]))[0, 1] > 0.95
    assert torch.corrcoef(torch.stack([mean.flatten(), gray.T.flatten()]))[0, 1] < 0.9
    assert "static" in parts["test"].describe()


def test_binarized_mnist_dynamic_and_threshold_variants(shared_data):
    dyn = load_dataset("binarized_mnist", "train", data_dir=shared_data, binarize="dynamic")
    assert dyn.dynamic_binarize and ((dyn.patterns > 0) & (dyn.patterns < 1)).any()
    fixed_a = load_dataset("binarized_mnist", "test", data_dir=shared_data, binarize="dynamic")
    fixed_b = load_dataset("binarized_mnist", "test", data_dir=shared_data, binarize="dynamic")
    assert not fixed_a.dynamic_binarize and torch.equal(fixed_a.patterns, fixed_b.patterns)
    thr = load_dataset("binarized_mnist", "test", data_dir=shared_data, binarize="threshold")
    gray = load_dataset("mnist", "test", data_dir=shared_data)
    assert torch.equal(thr.patterns, (gray.patterns > 0.5).float())


# ----------------------------------------------------------------------------- tiny self-made files


def write_idx(path, array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def make_mnist(folder, n_train=30, n_test=10):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for kind, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{kind}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{kind}-labels-idx1-ubyte.gz", np.arange(n) % 10)


def test_idx_reader_with_training_files_carves_val_from_train(tmp_path):
    make_mnist(tmp_path / "mnist")
    sizes = [len(load_dataset("mnist", s, data_dir=tmp_path)) for s in ("train", "val", "test")]
    assert sizes == [27, 3, 10]
    img = read_idx(tmp_path / "mnist" / "train-images-idx3-ubyte.gz")
    assert torch.equal(
        load_dataset("mnist", "val", data_dir=tmp_path).patterns[:, 0], torch.from_numpy(img[27:]) / 255.0
    )


def test_truncated_idx_raises_data_error_naming_the_file(tmp_path):
    make_mnist(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    path.write_bytes(path.read_bytes()[:50])  # a cut gzip stream
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        read_idx(path)


def test_wrong_magic_raises_data_error(tmp_path):
    path = tmp_path / "bad.gz"
    write_idx(path, np.zeros((2, 3, 3)), magic=0x1234)
    with pytest.raises(DataError, match="wrong magic"):
        read_idx(path)


def test_missing_file_says_how_to_download_it(tmp_path):
    with pytest.raises(DataError, match="engram data download mnist"):
        load_dataset("mnist", "test", data_dir=tmp_path)
    with pytest.raises(DataError, match="engram data download omniglot"):
        load_dataset("omniglot", "test", data_dir=tmp_path)


def make_cifar(folder, n=20):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name in ("data_batch_1", "data_batch_2", "test_batch"):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_python_batches(tmp_path):
    make_cifar(tmp_path / "cifar10" / "cifar-10-batches-py")
    train = load_dataset("cifar10", "train", data_dir=tmp_path)
    val = load_dataset("cifar10", "val", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert (len(train), len(val), len(test)) == (36, 4, 20) and test.pattern_shape == (3, 32, 32)
    with open(tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch", "rb") as f:
        raw = pickle.load(f, encoding="bytes")[b"data"]
    assert torch.equal(test.patterns[3], torch.from_numpy(raw[3].reshape(3, 32, 32)).float() / 255)
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", "test", data_dir=tmp_path)


def test_image_folder_center_crops_resizes_and_splits(tmp_path):
    from PIL import Image

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(10):
        img = np.zeros((30, 20, 3), dtype=np.uint8)  # H=30, W=20: the centre crop is rows 5..25
        img[5:25] = 200
        img[:, :, 0] = i * 10
        Image.fromarray(img).save(folder / f"{i:03d}.png")
    parts = {
        s: load_dataset("image_folder", s, data_dir=tmp_path, image_size=8, path=folder)
        for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in ("train", "val", "test")] == [8, 1, 1]
    x = parts["train"].patterns
    assert x.shape == (8, 3, 8, 8) and torch.allclose(x[:, 1], torch.full_like(x[:, 1], 200 / 255), atol=1e-6)
    reds = sorted(set().union(*(set((p.patterns[:, 0, 0, 0] * 255).round().int().tolist()) for p in parts.values())))
    assert reds == [i * 10 for i in range(10)]  # every image in exactly one split


def test_cache_makes_the_second_load_fast_and_equal(tmp_path, monkeypatch, shared_data):
    monkeypatch.setenv("ENGRAM_CACHE", str(tmp_path / "cache"))
    t0 = time.perf_counter()
    first = load_dataset("fashion_mnist", "test", data_dir=shared_data)
    t1 = time.perf_counter()
    second = load_dataset("fashion_mnist", "test", data_dir=shared_data)
    t2 = time.perf_counter()
    assert torch.equal(first.patterns, second.patterns) and torch.equal(first.labels, second.labels)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert t2 - t1 < 0.5 and t2 - t1 < (t1 - t0)


def test_a_corrupt_cache_entry_is_detected_and_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGRAM_CACHE", str(tmp_path / "cache"))
    make_mnist(tmp_path / "mnist")
    first = load_dataset("mnist", "test", data_dir=tmp_path)
    (entry,) = (tmp_path / "cache").glob("*.npz")
    entry.write_bytes(entry.read_bytes()[:200])
    again = load_dataset("mnist", "test", data_dir=tmp_path)
    assert torch.equal(first.patterns, again.patterns)
    assert np.load(entry)["test_x"].shape == (10, 28, 28)  # rewritten whole
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_cache_key_changes_with_the_source_file_and_options(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"1")
    k1 = cache.cache_key("r", [f], {"s": 28})
    assert k1 != cache.cache_key("r", [f], {"s": 32})
    f.write_bytes(b"22")
    assert k1 != cache.cache_key("r", [f], {"s": 28})


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGRAM_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("ENGRAM_DATA")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "repo_root", lambda: tmp_path / "nowhere" / "repo")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir() == tmp_path / "xdg" / "engramlab" / "data"
    (tmp_path.parent / "shared" / "data").mkdir(parents=True, exist_ok=True)
    assert resolve_data_dir() == tmp_path.parent / "shared" / "data"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "imagenet"}, "unknown dataset"),
        ({"name": "digits", "split": "dev"}, "split"),
        ({"name": "digits", "binarize": "soft"}, "binarize"),
        ({"name": "digits", "image_size": 0}, "image_size"),
        ({"name": "digits", "crop": 3}, "unknown option 'crop'"),
    ],
)
def test_bad_arguments_raise_bad_config(kwargs, message):
    with pytest.raises(BadConfig, match=message):
        load_dataset(**kwargs)


def make_omniglot_zip(path, top, alphabets, chars=3, drawers=2):
    import io
    import zipfile

    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for a in alphabets:
            for c in range(1, chars + 1):
                for d in range(1, drawers + 1):
                    img = np.full((105, 105), 255, dtype=np.uint8)  # white background
                    img[20:80, 50:55] = 0  # one black stroke
                    buf = io.BytesIO()
                    Image.fromarray(img).convert("1").save(buf, format="PNG")
                    zf.writestr(f"{top}/{a}/character{c:02d}/{c:04d}_{d:02d}.png", buf.getvalue())


def test_omniglot_full_zips_background_is_train_val_and_evaluation_is_test(tmp_path):
    folder = tmp_path / "omniglot"
    folder.mkdir()
    make_omniglot_zip(folder / "images_background.zip", "images_background", ["A", "B"], chars=10)
    make_omniglot_zip(folder / "images_evaluation.zip", "images_evaluation", ["C"], chars=4)
    make_omniglot_zip(folder / "images_background_small1.zip", "images_background_small1", ["A"])  # ignored
    parts = {s: load_dataset("omniglot", s, data_dir=tmp_path) for s in ("train", "val", "test")}
    assert [len(parts[s]) for s in ("train", "val", "test")] == [36, 4, 8]  # 20 background chars, 2 for val
    assert set(parts["test"].labels.tolist()) == {20, 21, 22, 23}  # global index continues after background
    assert not set(parts["train"].labels.tolist()) & set(parts["val"].labels.tolist())
    assert "evaluation zip = test" in parts["test"].describe()
    x = parts["test"].patterns[0, 0]
    assert x[:3].max() == 0 and x[10:18, 13:15].amax(dim=1).min() > 0.5  # inverted: stroke = 1, background = 0


def test_a_corrupt_omniglot_zip_raises_data_error(tmp_path):
    (tmp_path / "omniglot").mkdir()
    (tmp_path / "omniglot" / "images_background_small1.zip").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DataError, match="images_background_small1.zip"):
        load_dataset("omniglot", "train", data_dir=tmp_path)
