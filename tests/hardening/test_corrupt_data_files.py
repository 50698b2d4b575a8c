"""Fault matrix, data: every reader given a truncated or damaged file raises a DataError that names
the file and suggests `engram data check` (never a bare ValueError, EOFError or PIL error)."""

import gzip
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from engramlab.episodes.datasets import load_dataset
from engramlab.errors import DataError


def write_idx_gz(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def png(size=(105, 105), mode="L"):
    from PIL import Image

    buf = io.BytesIO()
    img = np.full((*size, 3) if mode == "RGB" else size, 255, dtype=np.uint8)
    img[20:80, 50:55] = 0
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def make_mnist_like(root, folder):
    d = root / folder
    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    write_idx_gz(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28)))
    write_idx_gz(d / "t10k-labels-idx1-ubyte.gz", np.arange(10))
    return d / "t10k-images-idx3-ubyte.gz"


def make_labels_damaged(root):
    make_mnist_like(root, "mnist")
    return root / "mnist" / "t10k-labels-idx1-ubyte.gz"


def make_binarized(root):
    import scipy.io

    (root / "binarized-mnist").mkdir()
    path = root / "binarized-mnist" / "binarized_mnist_test.mat"
    scipy.io.savemat(path, {"X": (np.random.default_rng(0).random((6, 784)) > 0.5).astype(np.uint8)})
    return path


def make_omniglot(root):
    (root / "omniglot").mkdir()
    path = root / "omniglot" / "images_background_small1.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for a in ("A", "B"):
            for c in (1, 2):
                zf.writestr(f"images_background_small1/{a}/character{c:02d}/{c:04d}_01.png", png())
    return path


def make_cifar(root):
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batch = {b"data": np.random.default_rng(0).integers(0, 256, (6, 3072), dtype=np.uint8), b"labels": [0] * 6}
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    return folder / "test_batch"


def make_image_folder(root):
    folder = root / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    for i in range(4):
        (folder / f"{i:03d}.png").write_bytes(png((12, 10), "RGB"))
    return folder / "002.png"


READERS = {
    "mnist": (lambda root: make_mnist_like(root, "mnist"), dict(name="mnist", split="test")),
    "mnist labels": (make_labels_damaged, dict(name="mnist", split="test")),
    "fashion_mnist": (lambda root: make_mnist_like(root, "fashion-mnist"), dict(name="fashion_mnist", split="test")),
    "binarized_mnist": (make_binarized, dict(name="binarized_mnist", split="test")),
    "omniglot": (make_omniglot, dict(name="omniglot", split="train")),
    "cifar10": (make_cifar, dict(name="cifar10", split="test")),
    "image_folder": (make_image_folder, dict(name="image_folder", split="train", image_size=8)),
}


def damage(raw: bytes, how: str) -> bytes:
    n = len(raw)
    if how.startswith("cut"):
        return raw[: {"cut0": 0, "cut7": 7, "cut-quarter": n // 4, "cut-half": n // 2, "cut-most": n - 20}[how]]
    if how == "garbage-header":  # 192 bytes: past the free-text header of a .mat file
        return bytes((37 + i) % 256 for i in range(min(n, 192))) + raw[192:]
    if how == "not-this-format":
        return b"<html><body>404 Not Found</body></html>\n" * 3
    raise AssertionError(how)


DAMAGES = ["cut0", "cut7", "cut-quarter", "cut-half", "cut-most", "garbage-header", "not-this-format"]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_damaged_file_raises_data_error_naming_it(tmp_path, reader, how):
    make, kwargs = READERS[reader]
    target = make(tmp_path)
    target.write_bytes(damage(target.read_bytes(), how))
    with pytest.raises(DataError) as info:
        load_dataset(data_dir=tmp_path, **kwargs)
    message = str(info.value)
    assert target.name in message and "engram data check" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("reader", sorted(READERS))
def test_the_undamaged_files_load(tmp_path, reader):
    make, kwargs = READERS[reader]
    make(tmp_path)
    assert len(load_dataset(data_dir=tmp_path, **kwargs)) > 0


def test_a_bit_flip_inside_a_gzip_or_zip_is_caught_by_its_crc(tmp_path):
    for make, kwargs in (READERS["mnist"], READERS["omniglot"]):
        root = tmp_path / kwargs["name"]
        root.mkdir()
        target = make(root)
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 3] ^= 0xFF
        target.write_bytes(bytes(raw))
        with pytest.raises(DataError, match=f"{target.name}.*engram data check"):
            load_dataset(data_dir=root, **kwargs)
