"""Fetch datasets from their official sources with checksum verification; check what is present.

``download(name, data_dir)`` fetches each file of a dataset with urllib into a temp file in the
target folder, verifies its sha256 (or, where only the canonical md5 is published, its md5), and
renames it into place atomically; a failed check leaves nothing behind. ``check(data_dir)`` verifies
the files present. Neither is ever called with the network by the tests.

Checksums: the sha256 of the files shipped in ``../shared/data`` are pinned (data README); for files
not shipped, the canonical md5 where one is published; otherwise none (the sha256 is logged on
download so it can be pinned: "compute and pin them when first downloaded").

Example::

    download("mnist", "/data")            # fetches the missing MNIST files into /data/mnist
    for path, status in check("/data"):   # status: ok | missing | mismatch | unverified | not-a-file
        print(path, status)
"""

from __future__ import annotations

import hashlib
import logging
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from engramlab.episodes.datasets import resolve_data_dir
from engramlab.errors import BadConfig, DataError
from engramlab.fileio import atomic_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset.

    Attributes:
        path: where it lives, relative to the data directory.
        urls: official sources, tried in order.
        sha256: accepted sha256 digests (the shipped file's first), may be empty.
        md5: the canonical md5 when published (used when the sha256 is not known).
        extract: for archives, the folder (relative to the data dir) to extract into after download.
        optional: files a reader can do without (e.g. the one-shot runs).
    """

    path: str
    urls: tuple[str, ...]
    sha256: tuple[str, ...] = ()
    md5: str | None = None
    extract: str | None = None
    optional: bool = False


_OMNI = "https://github.com/brendenlake/omniglot/raw/master/python/"
_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_BMNIST = "https://github.com/mingzhang-yin/ARM-gradient/raw/master/"


def _mnist(name: str, md5: str, sha: tuple[str, ...] = ()) -> RemoteFile:
    return RemoteFile(f"mnist/{name}", tuple(u + name for u in _MNIST), sha, md5)


SOURCES: dict[str, tuple[RemoteFile, ...]] = {
    "omniglot": (
        RemoteFile(
            "omniglot/images_background_small1.zip",
            (_OMNI + "images_background_small1.zip",),
            ("f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",),
        ),
        RemoteFile(
            "omniglot/images_background_small2.zip",
            (_OMNI + "images_background_small2.zip",),
            ("3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",),
        ),
        RemoteFile(
            "omniglot/one_shot_runs.zip",
            (_OMNI + "one_shot_runs.zip",),
            ("437c1eeab0af8484112e1b4cc0f3d541ec727f7c47b9b202da738af9dfd6c325",),
            optional=True,
        ),
    ),
    "omniglot_full": (
        RemoteFile("omniglot/images_background.zip", (_OMNI + "images_background.zip",)),
        RemoteFile("omniglot/images_evaluation.zip", (_OMNI + "images_evaluation.zip",)),
    ),
    "mnist": (
        _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        _mnist(
            "t10k-images-idx3-ubyte.gz",
            "9fb629c4189551a2d022fa330f9573f3",
            ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",),
        ),
        _mnist(
            "t10k-labels-idx1-ubyte.gz",
            "ec29112dd5afa0611ce80d1b7f02629c",
            ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",),
        ),
    ),
    # The shipped Fashion-MNIST gzips are Debian-recompressed (data README): their sha256 are pinned,
    # and upstream downloads are verified by upstream's published md5 instead.
    "fashion_mnist": tuple(
        RemoteFile(f"fashion-mnist/{name}", (_FASHION + name,), (sha,), md5)
        for name, sha, md5 in (
            (
                "train-images-idx3-ubyte.gz",
                "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
                "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            ),
            (
                "train-labels-idx1-ubyte.gz",
                "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
                "25c81989df183df01b3e8a0aad5dffbe",
            ),
            (
                "t10k-images-idx3-ubyte.gz",
                "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
                "bef4ecab320f06d8554ea6380940ec79",
            ),
            (
                "t10k-labels-idx1-ubyte.gz",
                "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
                "bb300cfdad3c16e7a12a480ee83cd310",
            ),
        )
    ),
    # Larochelle & Murray's static binarization as MATLAB v5 files named .amat upstream (data README).
    "binarized_mnist": tuple(
        RemoteFile(f"binarized-mnist/binarized_mnist_{split}.mat", (f"{_BMNIST}binarized_mnist_{split}.amat",), (sha,))
        for split, sha in (
            ("train", "79a0312c7389d855cfc97e3812de3998417c5829d8a51543b56a90a91252ae7e"),
            ("valid", "7436afc856959075c7787025bb8a4ba2b520b9230ee39667c66aa7dd2819dd68"),
            ("test", "5bc30222e1e7896cbccd1e1db6b28540cc1230f4d2d5473841a5f6cc54be8d38"),
        )
    ),
    "cifar10": (
        RemoteFile(
            "cifar10/cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            md5="c58f30108f718f92721af3b95e74349a",
            extract="cifar10",
        ),
    ),
}
ALIASES = {"fashion-mnist": "fashion_mnist", "binarized-mnist": "binarized_mnist", "omniglot-full": "omniglot_full"}


def _digests(path: Path) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


def verify(path: Path, remote: RemoteFile) -> str:
    """'ok' (a known sha256 or the md5 matches), 'mismatch', 'unverified' (no checksum known), 'missing'
    or 'not-a-file' (a folder, FIFO or device where the file should be)."""
    if not Path(path).exists():
        return "missing"
    if not Path(path).is_file():  # a folder, FIFO or device: hashing it would fail or never end
        return "not-a-file"
    if not remote.sha256 and remote.md5 is None:
        return "unverified"
    sha, md5 = _digests(Path(path))
    return "ok" if sha in remote.sha256 or (remote.md5 is not None and md5 == remote.md5) else "mismatch"


def _resolve(name: str) -> tuple[RemoteFile, ...]:
    key = ALIASES.get(name, name)
    if key not in SOURCES:
        raise BadConfig(f"no download source for dataset '{name}'; known: {', '.join(SOURCES)}")
    return SOURCES[key]


def _fetch(url: str, dest: Path, remote: RemoteFile, progress: bool) -> None:
    """Download url into a temp file beside dest, verify it, rename it into place."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0) or None
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=dest.name)
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                out.write(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        status = verify(tmp, remote)
        if status == "mismatch":
            raise DataError(f"checksum mismatch for {url} (expected sha256 {remote.sha256 or '-'}, md5 {remote.md5})")
        if status == "unverified":
            log.warning("no checksum pinned for %s; its sha256 is %s", dest, _digests(tmp)[0])


def download(name: str, data_dir: str | Path | None = None, progress: bool = True, force: bool = False) -> list[Path]:
    """Fetch the files of dataset ``name`` into ``data_dir``; returns the paths now present and verified.

    Files already present with a matching checksum are skipped (unless ``force``). Archives are
    extracted after verification. Raises DataError when every source of a required file fails.
    """
    root = resolve_data_dir(data_dir)
    done = []
    for remote in _resolve(name):
        dest = root / remote.path
        if not force and verify(dest, remote) in ("ok", "unverified"):
            done.append(dest)
            continue
        errors = []
        for url in remote.urls:
            try:
                log.info("downloading %s -> %s", url, dest)
                _fetch(url, dest, remote, progress)
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {e}")
        else:
            if remote.optional:
                log.warning("optional file %s not downloaded: %s", dest, "; ".join(errors))
                continue
            raise DataError(f"could not download {remote.path}: " + "; ".join(errors))
        if remote.extract:
            target = root / remote.extract
            try:
                with tarfile.open(dest) as tar:
                    _safe_extract(tar, target)
            except (tarfile.TarError, OSError) as e:
                raise DataError(f"cannot extract {dest}: {e}") from e
        done.append(dest)
    return done


def _safe_extract(tar: tarfile.TarFile, target: Path) -> None:
    """Extract an archive, refusing members that would land outside ``target`` (links, absolute paths)."""
    try:
        tar.extractall(target, filter="data")
    except tarfile.FilterError as e:  # absolute or '..' names, links out of target, devices
        raise DataError(f"refusing to extract unsafe member of archive {tar.name}: {e}") from e
    except TypeError:  # Python < 3.10.12 has no extraction filters
        root = target.resolve()
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not (member.isfile() or member.isdir()) or (root not in dest.parents and dest != root):
                raise DataError(f"refusing to extract unsafe member {member.name!r} of archive {tar.name}") from None
        tar.extractall(target)


def check(data_dir: str | Path | None = None, names: list[str] | None = None) -> list[tuple[str, str]]:
    """(relative path, status) for every known file of ``names`` (default all), status as in ``verify``."""
    root = resolve_data_dir(data_dir)
    out = []
    for name in names or list(SOURCES):
        for remote in _resolve(name):
            out.append((remote.path, verify(root / remote.path, remote)))
    return out
