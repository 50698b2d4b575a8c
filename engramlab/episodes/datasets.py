"""Readers of the standard dataset formats, returning a ``PatternSet`` per split.

Every reader returns float32 patterns in [0, 1] shaped (N, C, H, W), integer labels (or None) and
explicit, disjoint train/val/test splits that ``PatternSet.describe()`` states. Decoded arrays are
cached on disk (``engramlab.episodes.cache``) so a second load takes milliseconds.

Data directory: explicit ``data_dir`` > ``ENGRAM_DATA`` > ``../shared/data`` relative to the working
directory or to the repository root, when present > ``$XDG_CACHE_HOME/engramlab/data``.

Example::

    train = load_dataset("digits", "train")                    # (1257, 1, 8, 8), no files needed
    omni = load_dataset("omniglot", "test", image_size=28, binarize="threshold")
    print(omni.describe())
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engramlab.episodes.cache import cache_key, load_cached, store_cached
from engramlab.episodes.safeload import data_file, load_plain_pickle, zip_member_ok
from engramlab.errors import BadConfig, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
BINARIZE = (None, "static", "dynamic", "threshold")
#: Seed of every fixed split permutation and of the fixed Bernoulli samples (static/dynamic val/test).
SPLIT_SEED = 20261125
#: With only the shipped small Omniglot zips (8 alphabets), these two alphabets are the test split.
SMALL_OMNIGLOT_TEST_ALPHABETS = ("Korean", "Tagalog")
#: Fraction of training characters (Omniglot) or training images (others) carved out as validation.
VAL_FRACTION = 0.1


@dataclass
class PatternSet:
    """One split of a dataset.

    Attributes:
        patterns: (N, *shape) float32 in ``value_range`` (images (N, C, H, W) in [0, 1]).
        labels: (N,) long class labels, or None when the source has none.
        name: the dataset name given to ``load_dataset``.
        split: "train", "val" or "test".
        value_range: (low, high) of pattern values.
        info: how the split was made (files, split rule, binarization), shown by ``describe()``.
        dynamic_binarize: when True, ``patterns`` are Bernoulli probabilities and the sampler draws a
            fresh binary sample per sampled episode (dynamically binarized MNIST, train split).
    """

    patterns: Tensor
    labels: Tensor | None
    name: str
    split: str
    value_range: tuple[float, float] = (0.0, 1.0)
    info: str = ""
    dynamic_binarize: bool = False

    def __len__(self) -> int:
        return int(self.patterns.shape[0])

    @property
    def pattern_shape(self) -> tuple[int, ...]:
        return tuple(self.patterns.shape[1:])

    @property
    def num_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.unique().numel())

    def describe(self) -> str:
        """One paragraph: name, split, size, shape, range, classes and how the split was made."""
        classes = f", {self.num_classes} classes" if self.labels is not None else ", unlabelled"
        dyn = ", dynamically binarized per episode" if self.dynamic_binarize else ""
        return (
            f"{self.name}[{self.split}]: {len(self)} patterns of shape {self.pattern_shape}, "
            f"values in {list(self.value_range)}{classes}{dyn}. {self.info}".strip()
        )


# ----------------------------------------------------------------------------- data directory


def repo_root() -> Path:
    """The folder holding the ``engramlab`` package (the repository root in a source checkout)."""
    return Path(__file__).resolve().parent.parent.parent


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: explicit > ``ENGRAM_DATA`` > ``../shared/data`` (cwd, then repo root) > user dir."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("ENGRAM_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), repo_root()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return candidate
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "engramlab" / "data"


def _missing(path: Path, download_name: str) -> DataError:
    return DataError(f"data file not found: {path} (run `engram data download {download_name}` or set --data-dir)")


def _corrupt(path: Path, why: str) -> DataError:
    """The one error of a truncated or damaged data file: names it and says how to check it."""
    return DataError(f"cannot read data file {path}: {why} (truncated or corrupt? run `engram data check`)")


# ----------------------------------------------------------------------------- helpers


def _split_indices(n: int, fractions: tuple[float, float], seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """A fixed random permutation of range(n) cut into train/val/test with val, test fractions."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val, n_test = int(round(n * fractions[0])), int(round(n * fractions[1]))
    n_train = n - n_val - n_test
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


def _resize(x: Tensor, image_size: int | None) -> Tensor:
    """(N, C, H, W) resized to image_size² with antialiased bilinear interpolation (no-op when equal)."""
    if image_size is None or tuple(x.shape[-2:]) == (image_size, image_size):
        return x
    out = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def _binarize(x: Tensor, binarize: str | None, split: str, name: str) -> tuple[Tensor, bool, str]:
    """Apply a binarization variant; returns (patterns, dynamic flag, description).

    threshold: x > 0.5. static: one fixed Bernoulli(x) sample (seeded) for every split.
    dynamic: train keeps the probabilities and the sampler resamples per episode; val/test get one
    fixed Bernoulli sample (NOTES.md, Evaluation conventions).
    """
    if binarize is None:
        return x, False, ""
    if binarize == "threshold":
        return (x > 0.5).float(), False, "Binarized by thresholding at 0.5."
    gen = torch.Generator().manual_seed(SPLIT_SEED + SPLITS.index(split))
    if binarize == "static":
        return torch.bernoulli(x, generator=gen), False, "Statically binarized: one fixed Bernoulli sample."
    if binarize == "dynamic":
        if split == "train":
            return x, True, "Dynamically binarized: a fresh Bernoulli sample per sampled episode."
        return torch.bernoulli(x, generator=gen), False, "Dynamic binarization: one fixed Bernoulli sample (val/test)."
    raise BadConfig(f"binarize must be one of {list(BINARIZE)} for {name}, got {binarize!r}")


def _cached(reader: str, files: list[Path], options: dict[str, Any], decode: Callable[[], dict[str, np.ndarray]]):
    key = cache_key(reader, files, options)
    arrays = load_cached(key)
    if arrays is None:
        arrays = store_cached(key, decode())
    return arrays


def _to_images(u8: np.ndarray) -> Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float32 (N, C, H, W) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(u8)).float().div_(255.0)
    return x.unsqueeze(1) if x.dim() == 3 else x


# ----------------------------------------------------------------------------- idx (MNIST family)


def read_idx(path: Path) -> np.ndarray:
    """An idx(.gz) file as a uint8 array; a missing, truncated or wrong-magic file raises DataError.

    Format (data README): big-endian uint32 magic 0x00000803 (images) or 0x00000801 (labels), one
    uint32 per dimension, then uint8 data in row-major order.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file not found: {path}")
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib_error()) as e:
        raise _corrupt(path, f"not a readable (gzipped) idx file: {e}") from e
    if len(raw) < 8:
        raise _corrupt(path, f"idx file is truncated ({len(raw)} bytes)")
    magic = struct.unpack(">I", raw[:4])[0]
    if magic not in (0x00000801, 0x00000803):
        raise _corrupt(path, f"idx file has wrong magic {magic:#010x} (expected 0x00000801 or 0x00000803)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise _corrupt(path, "idx file is truncated in its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != count:
        raise _corrupt(path, f"idx file holds {len(raw) - header} bytes of data, expected {count} for shape {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def _find(data_dir: Path, folders: tuple[str, ...], filename: str) -> Path | None:
    """The first ``data_dir/folder/filename`` present, checked to be a regular file inside data_dir."""
    for folder in folders:
        p = data_dir / folder / filename
        if p.exists() or p.is_symlink():
            return data_file(p, data_dir)
    return None


def _load_mnist_like(
    name: str, folders: tuple[str, ...], download: str, data_dir: Path
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], str]:
    """Grayscale uint8 images + labels per split for MNIST/Fashion-MNIST, and the split description."""
    paths = {
        (k, kind): _find(data_dir, folders, f"{k}-{kind}-idx{n}-ubyte.gz")
        for k in ("train", "t10k")
        for kind, n in (("images", 3), ("labels", 1))
    }
    for kind in ("images", "labels"):
        if paths[("t10k", kind)] is None:
            n = 3 if kind == "images" else 1
            raise _missing(data_dir / folders[0] / f"t10k-{kind}-idx{n}-ubyte.gz", download)
    have_train = paths[("train", "images")] is not None and paths[("train", "labels")] is not None
    sources = (
        [p for p in paths.values() if p is not None]
        if have_train
        else [
            paths[("t10k", "images")],
            paths[("t10k", "labels")],
        ]
    )

    def decode() -> dict[str, np.ndarray]:
        out = {"test_x": read_idx(paths[("t10k", "images")]), "test_y": read_idx(paths[("t10k", "labels")])}
        if have_train:
            out["train_x"] = read_idx(paths[("train", "images")])
            out["train_y"] = read_idx(paths[("train", "labels")])
        for k in [k for k in out if k.endswith("_x")]:
            labels = out[k.replace("_x", "_y")]
            if out[k].ndim != 3 or labels.ndim != 1 or out[k].shape[0] != labels.shape[0]:
                where = paths[("t10k" if k == "test_x" else "train", "images")]
                raise _corrupt(where, f"{name} images {out[k].shape} and labels {labels.shape} do not match")
        return out

    arrays = _cached(name, sources, {}, decode)
    tx, ty = arrays["test_x"], arrays["test_y"]
    if have_train:
        x, y = arrays["train_x"], arrays["train_y"]
        n_val = int(round(len(x) * VAL_FRACTION))
        n_tr = len(x) - n_val
        splits = {"train": (x[:n_tr], y[:n_tr]), "val": (x[n_tr:], y[n_tr:]), "test": (tx, ty)}
        desc = f"Splits: train = first {n_tr} of the training file, val = its last {n_val}, test = t10k ({len(tx)})."
    else:
        n = len(tx)
        a, b = int(n * 0.8), int(n * 0.9)
        splits = {"train": (tx[:a], ty[:a]), "val": (tx[a:b], ty[a:b]), "test": (tx[b:], ty[b:])}
        desc = (
            f"Only the t10k file is present: explicit index splits of it, train = [0, {a}), "
            f"val = [{a}, {b}), test = [{b}, {n})."
        )
    return splits, desc


def _mnist_family(name: str, split: str, data_dir: Path, image_size: int | None, binarize: str | None) -> PatternSet:
    folders = {"mnist": ("mnist", "MNIST/raw", "MNIST"), "fashion_mnist": ("fashion-mnist", "fashion_mnist")}[name]
    download = {"mnist": "mnist", "fashion_mnist": "fashion_mnist"}[name]
    splits, desc = _load_mnist_like(name, folders, download, data_dir)
    x, y = splits[split]
    patterns = _resize(_to_images(x), image_size)
    patterns, dyn, bdesc = _binarize(patterns, binarize, split, name)
    return PatternSet(patterns, torch.from_numpy(y.astype(np.int64)), name, split, (0.0, 1.0), f"{desc} {bdesc}", dyn)


# ----------------------------------------------------------------------------- binarized MNIST


def _binarized_mnist(split: str, data_dir: Path, image_size: int | None, binarize: str | None) -> PatternSet:
    """Binarized MNIST in a named variant (NOTES.md): static (Larochelle .mat), dynamic, threshold."""
    variant = binarize or "static"
    if variant not in ("static", "dynamic", "threshold"):
        raise BadConfig(f"binarized_mnist variant (binarize) must be static, dynamic or threshold, got {binarize!r}")
    if variant != "static":
        ps = _mnist_family("mnist", split, data_dir, image_size, variant)
        ps.name = "binarized_mnist"
        ps.info = f"Variant: {variant} binarization of grayscale MNIST. {ps.info}"
        return ps
    fname = {"train": "train", "val": "valid", "test": "test"}[split]
    path = _find(data_dir, ("binarized-mnist", "binarized_mnist"), f"binarized_mnist_{fname}.mat")
    if path is None:
        raise _missing(data_dir / "binarized-mnist" / f"binarized_mnist_{fname}.mat", "binarized_mnist")

    def decode() -> dict[str, np.ndarray]:
        import scipy.io

        try:
            mat = scipy.io.loadmat(str(path))
        except Exception as e:  # scipy raises ValueError/TypeError/MatReadError on corrupt files
            raise _corrupt(path, f"not a readable MATLAB file ({type(e).__name__}: {e})") from e
        if "X" not in mat:
            raise _corrupt(path, f"binarized MNIST file has no key 'X' (keys: {sorted(mat)})")
        x = np.asarray(mat["X"])
        if x.ndim != 2 or x.shape[1] != 784 or x.dtype.hasobject:
            raise _corrupt(path, f"binarized MNIST X has shape {x.shape}, dtype {x.dtype}; expected (N, 784) numbers")
        return {"x": (x.reshape(-1, 28, 28) > 0).astype(np.uint8)}

    x = _cached("binarized_mnist", [path], {}, decode)["x"]
    patterns = torch.from_numpy(x).float().unsqueeze(1)
    if image_size is not None and image_size != 28:
        patterns = (_resize(patterns, image_size) > 0.5).float()
    info = f"Variant: static (Larochelle & Murray fixed sample), file {path.name}; splits 50k/10k/10k as shipped."
    return PatternSet(patterns, None, "binarized_mnist", split, (0.0, 1.0), info, False)


# ----------------------------------------------------------------------------- Omniglot

_OMNI_RE = re.compile(r"^(?:.*/)?([^/]+)/(character\d+)/([^/]+\.png)$")
#: An Omniglot PNG is ~1 kB; a larger zip entry is refused rather than decompressed (zip bomb).
MAX_ZIP_IMAGE_BYTES = 8 << 20


def _omniglot_zip_images(path: Path, image_size: int) -> tuple[list[tuple[str, str, str]], np.ndarray]:
    """(alphabet, character, file) keys and uint8 (N, S, S) images, strokes = 255, read from the zip."""
    from PIL import Image

    keys: list[tuple[str, str, str]] = []
    images: list[np.ndarray] = []
    entry = ""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                entry = info.filename
                if not zip_member_ok(entry):
                    raise _corrupt(path, f"unsafe zip entry name {entry!r} (absolute or with '..')")
                m = _OMNI_RE.match(entry)
                if info.is_dir() or m is None:
                    continue
                if info.file_size > MAX_ZIP_IMAGE_BYTES:
                    raise _corrupt(path, f"zip entry {entry!r} claims {info.file_size} bytes, too large for an image")
                with Image.open(io.BytesIO(zf.read(info))) as img:
                    gray = img.convert("L")
                # Invert so strokes are 1 (data README), then antialiased resize.
                inv = Image.fromarray(255 - np.asarray(gray, dtype=np.uint8))
                if inv.size != (image_size, image_size):
                    inv = inv.resize((image_size, image_size), Image.Resampling.LANCZOS)
                keys.append(m.groups())
                images.append(np.asarray(inv, dtype=np.uint8))
    except DataError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, SyntaxError, struct.error, zlib_error()) as e:
        # PIL reports damaged PNGs as OSError, SyntaxError or ValueError; zip as BadZipFile (bad CRC).
        where = f" (entry {entry!r})" if entry else ""
        raise _corrupt(path, f"{type(e).__name__}: {e}{where}") from e
    except Image.DecompressionBombError as e:
        raise _corrupt(path, f"image entry {entry!r} is too large: {e}") from e
    if not images:
        raise _corrupt(path, "the Omniglot zip holds no <alphabet>/characterNN/*.png images")
    return keys, np.stack(images)


def _omniglot(split: str, data_dir: Path, image_size: int | None, binarize: str | None) -> PatternSet:
    size = image_size or 28
    folders = ("omniglot", "")
    full = [_find(data_dir, folders, f"images_{k}.zip") for k in ("background", "evaluation")]
    small = [_find(data_dir, folders, f"images_background_small{k}.zip") for k in (1, 2)]
    if all(p is not None for p in full):
        mode, sources = "full", full
    elif any(p is not None for p in small):
        mode, sources = "small", [p for p in small if p is not None]
    else:
        raise _missing(data_dir / "omniglot" / "images_background.zip", "omniglot")

    def decode() -> dict[str, np.ndarray]:
        seen: dict[tuple[str, str, str], int] = {}
        all_keys, all_imgs, origin = [], [], []
        for src_i, path in enumerate(sources):
            keys, imgs = _omniglot_zip_images(path, size)
            for k, img in zip(keys, imgs):
                if k in seen:  # Greek and Latin appear in both small zips: dedupe
                    continue
                seen[k] = len(all_keys)
                all_keys.append(k)
                all_imgs.append(img)
                origin.append(src_i)
        chars = sorted({(o, k[0], k[1]) for o, k in zip(origin, all_keys)})
        char_index = {c: i for i, c in enumerate(chars)}
        labels = np.array([char_index[(o, k[0], k[1])] for o, k in zip(origin, all_keys)], dtype=np.int64)
        alphabets = sorted({k[0] for k in all_keys})
        alpha = np.array([alphabets.index(k[0]) for k in all_keys], dtype=np.int64)
        return {
            "x": np.stack(all_imgs),
            "labels": labels,
            "alphabet": alpha,
            "alphabet_names": np.array(alphabets),
            "origin": np.array(origin, dtype=np.int64),
        }

    arrays = _cached("omniglot", sources, {"image_size": size, "mode": mode}, decode)
    labels, alpha, origin = arrays["labels"], arrays["alphabet"], arrays["origin"]
    names = [str(a) for a in arrays["alphabet_names"]]
    if mode == "full":
        test_sel = origin == 1
        desc = "Splits: background zip = train/val (val = 10% of its characters), evaluation zip = test."
    else:
        test_ids = [names.index(a) for a in SMALL_OMNIGLOT_TEST_ALPHABETS if a in names]
        test_sel = np.isin(alpha, test_ids)
        train_alpha = sorted(set(names) - set(SMALL_OMNIGLOT_TEST_ALPHABETS))
        desc = (
            f"Only the small background zips ({len(names)} alphabets, Greek/Latin deduplicated): split by alphabet, "
            f"test = {', '.join(a for a in SMALL_OMNIGLOT_TEST_ALPHABETS if a in names)}; "
            f"train/val = {', '.join(train_alpha)} (val = 10% of their characters)."
        )
    train_chars = np.unique(labels[~test_sel])
    perm = np.random.default_rng(SPLIT_SEED).permutation(train_chars)
    val_chars = perm[: int(round(len(train_chars) * VAL_FRACTION))]
    val_sel = np.isin(labels, val_chars) & ~test_sel
    sel = {"test": test_sel, "val": val_sel, "train": ~test_sel & ~val_sel}[split]
    idx = np.nonzero(sel)[0]
    patterns = _to_images(arrays["x"][idx])
    patterns, dyn, bdesc = _binarize(patterns, binarize, split, "omniglot")
    info = f"{desc} {size}x{size}, LANCZOS-resized from 105x105, strokes = 1. Labels = global character index. {bdesc}"
    return PatternSet(patterns, torch.from_numpy(labels[idx]), "omniglot", split, (0.0, 1.0), info.strip(), dyn)


# ----------------------------------------------------------------------------- CIFAR-10


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: uint8 images (N, 3, 32, 32) and int64 labels (N,).

    Decoded with a restricted unpickler (``safeload.load_plain_pickle``): a file that names any
    other global than numpy's array rebuilders raises DataError instead of running it.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            d = load_plain_pickle(f)
    except pickle.UnpicklingError as e:  # a refused global, or a damaged stream
        raise _corrupt(path, f"unpickling failed: {e}") from e
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, MemoryError) as e:
        raise _corrupt(path, f"{type(e).__name__}: {e}") from e
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        keys = sorted(map(repr, d)) if isinstance(d, dict) else type(d).__name__
        raise _corrupt(path, f"expected a dict with b'data' and b'labels', got {keys}")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype.hasobject or data.dtype.kind not in "ui":
        raise _corrupt(path, f"b'data' must be an integer array, got {type(data).__name__}")
    if not isinstance(labels, (list, tuple, np.ndarray)) or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels
    ):
        raise _corrupt(path, "b'labels' must be a list of integers")
    if data.size % 3072 or data.size == 0:
        raise _corrupt(path, f"b'data' has shape {data.shape}, expected (N, 3072)")
    x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(x) != len(y):
        raise _corrupt(path, f"{len(x)} images but {len(y)} labels")
    return x, y


def _cifar10(split: str, data_dir: Path, image_size: int | None, binarize: str | None) -> PatternSet:
    folder = None
    for cand in (data_dir / "cifar10" / "cifar-10-batches-py", data_dir / "cifar-10-batches-py", data_dir / "cifar10"):
        if (cand / "test_batch").exists():
            folder = cand
            break
    if folder is None:
        raise _missing(data_dir / "cifar10" / "cifar-10-batches-py" / "test_batch", "cifar10")
    train_files = [data_file(p, data_dir) for p in sorted(folder.glob("data_batch_*"))]
    sources = [*train_files, data_file(folder / "test_batch", data_dir)]

    def decode() -> dict[str, np.ndarray]:
        tx, ty = read_cifar_batch(folder / "test_batch")
        out = {"test_x": tx, "test_y": ty}
        if train_files:
            parts = [read_cifar_batch(p) for p in train_files]
            out["train_x"] = np.concatenate([p[0] for p in parts])
            out["train_y"] = np.concatenate([p[1] for p in parts])
        return out

    arrays = _cached("cifar10", sources, {}, decode)
    if split == "test":
        x, y = arrays["test_x"], arrays["test_y"]
        desc = "test = test_batch."
    else:
        if "train_x" not in arrays:
            raise _missing(folder / "data_batch_1", "cifar10")
        n = len(arrays["train_x"])
        n_val = int(round(n * VAL_FRACTION))
        sl = slice(0, n - n_val) if split == "train" else slice(n - n_val, n)
        x, y = arrays["train_x"][sl], arrays["train_y"][sl]
        desc = f"train = first {n - n_val} of data_batch_*, val = last {n_val}."
    patterns = _resize(_to_images(x), image_size)
    patterns, dyn, bdesc = _binarize(patterns, binarize, split, "cifar10")
    return PatternSet(patterns, torch.from_numpy(y), "cifar10", split, (0.0, 1.0), f"{desc} {bdesc}".strip(), dyn)


# ----------------------------------------------------------------------------- image folder

_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def _image_folder(
    split: str,
    data_dir: Path,
    image_size: int | None,
    binarize: str | None,
    path: str | Path | None = None,
    crop: int | None = None,
    channels: int = 3,
) -> PatternSet:
    """A CelebA-style folder of images: center crop (``crop`` px, default the short side), resize, RGB.

    Splits: a fixed random permutation of the sorted file list, 80% / 10% / 10%.
    """
    from PIL import Image, UnidentifiedImageError

    folder = Path(path) if path is not None else data_dir / "celeba" / "img_align_celeba"
    if not folder.is_dir():
        raise _missing(folder, "image_folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_EXT and (p.is_file() or p.is_symlink()))
    files = [data_file(p, folder) for p in files]  # no symlink out of the folder, no FIFO/device
    if not files:
        raise DataError(f"image folder {folder} holds no .png/.jpg images")
    size = image_size or 64
    if channels not in (1, 3):
        raise BadConfig(f"image_folder channels must be 1 or 3, got {channels}")

    def decode() -> dict[str, np.ndarray]:
        out = []
        for f in files:
            try:
                with Image.open(f) as img:  # PIL decodes a cut PNG without complaint; verify() checks its chunks
                    img.verify()
                with Image.open(f) as img:
                    img = img.convert("RGB" if channels == 3 else "L")
                    w, h = img.size
                    c = min(crop or min(w, h), w, h)
                    left, top = (w - c) // 2, (h - c) // 2
                    img = img.crop((left, top, left + c, top + c)).resize((size, size), Image.Resampling.LANCZOS)
                    out.append(np.asarray(img, dtype=np.uint8))
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise _corrupt(f, f"not a readable image ({type(e).__name__}: {e})") from e
        x = np.stack(out)
        return {"x": x.transpose(0, 3, 1, 2) if channels == 3 else x}

    x = _cached("image_folder", files, {"size": size, "crop": crop, "channels": channels}, decode)["x"]
    idx = _split_indices(len(x), (0.1, 0.1))[split]
    patterns, dyn, bdesc = _binarize(_to_images(x[idx]), binarize, split, "image_folder")
    info = (
        f"{len(files)} images under {folder}, center crop {crop or 'short side'} -> {size}x{size}; "
        f"splits: fixed random 80/10/10 of the sorted files. {bdesc}"
    )
    return PatternSet(patterns, None, "image_folder", split, (0.0, 1.0), info.strip(), dyn)


# ----------------------------------------------------------------------------- digits


def _digits(split: str, image_size: int | None, binarize: str | None) -> PatternSet:
    """scikit-learn's embedded 8x8 digits (1797 images, values 0..16 -> [0, 1]); fixed 70/10/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    y = torch.from_numpy(d.target.astype(np.int64))
    idx = torch.from_numpy(_split_indices(len(x), (0.1, 0.2))[split])
    patterns = _resize(x[idx], image_size)
    patterns, dyn, bdesc = _binarize(patterns, binarize, split, "digits")
    sizes = {k: len(v) for k, v in _split_indices(len(x), (0.1, 0.2)).items()}
    split_sizes = f"{sizes['train']}/{sizes['val']}/{sizes['test']}"
    info = f"scikit-learn load_digits, fixed random split train/val/test = {split_sizes}. {bdesc}"
    return PatternSet(patterns.contiguous(), y[idx], "digits", split, (0.0, 1.0), info.strip(), dyn)


# ----------------------------------------------------------------------------- entry point

DATASETS = ("digits", "omniglot", "mnist", "fashion_mnist", "binarized_mnist", "cifar10", "image_folder")


def load_dataset(
    name: str,
    split: str = "train",
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    binarize: str | None = None,
    **options: Any,
) -> PatternSet:
    """One split of a dataset as a ``PatternSet`` of float32 (N, C, H, W) images in [0, 1].

    Args:
        name: one of ``DATASETS`` ("digits" needs no files).
        split: "train", "val" or "test" (disjoint; ``describe()`` says how they were made).
        data_dir: the data directory (see ``resolve_data_dir``).
        image_size: resize to image_size² (Omniglot default 28, image_folder default 64, else native).
        binarize: None, "static", "dynamic" or "threshold" (binarized_mnist: the variant, default static).
        options: reader-specific (image_folder: ``path``, ``crop``, ``channels``).

    Raises:
        BadConfig: unknown name, split, binarize or option. DataError: a missing or corrupt file.
    """
    if split not in SPLITS:
        raise BadConfig(f"split must be one of {list(SPLITS)}, got {split!r}")
    if binarize not in BINARIZE:
        raise BadConfig(f"binarize must be one of {list(BINARIZE)}, got {binarize!r}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise BadConfig(f"image_size must be a positive integer, got {image_size!r}")
    if name != "image_folder" and options:
        raise BadConfig(f"unknown option '{sorted(options)[0]}' for dataset {name}")
    if name == "digits":
        return _digits(split, image_size, binarize)
    root = resolve_data_dir(data_dir)
    if name in ("mnist", "fashion_mnist"):
        return _mnist_family(name, split, root, image_size, binarize)
    if name == "binarized_mnist":
        return _binarized_mnist(split, root, image_size, binarize)
    if name == "omniglot":
        return _omniglot(split, root, image_size, binarize)
    if name == "cifar10":
        return _cifar10(split, root, image_size, binarize)
    if name == "image_folder":
        unknown = sorted(set(options) - {"path", "crop", "channels"})
        if unknown:
            raise BadConfig(f"unknown option '{unknown[0]}' for dataset image_folder (known: channels, crop, path)")
        return _image_folder(split, root, image_size, binarize, **options)
    raise BadConfig(f"unknown dataset '{name}'; known datasets: {', '.join(DATASETS)}")
