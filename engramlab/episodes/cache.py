"""A small on-disk cache of decoded arrays, so a second load of a dataset takes milliseconds.

Entries are uncompressed ``.npz`` files named by a key hashed from the source files' identity
(path, size, mtime) and the decode options. Writes are atomic (temp file in the same folder, then
``os.replace``), so an interrupted write never leaves a half-written entry; an entry that fails to
load (truncated, wrong key, missing arrays) is treated as absent and rebuilt.

Example::

    key = cache_key("omniglot", [zip_path], {"image_size": 28})
    arrays = load_cached(key) or store_cached(key, decode())
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from engramlab.fileio import atomic_path

log = logging.getLogger(__name__)

#: Bump when a reader's decoded output changes, so old cache entries stop matching.
CACHE_VERSION = 1


def cache_dir() -> Path:
    """The folder of decoded-array caches: ``ENGRAM_CACHE`` if set, else the user cache dir.

    The user cache dir is ``$XDG_CACHE_HOME/engramlab/decoded`` (``~/.cache`` when unset).
    """
    env = os.environ.get("ENGRAM_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "engramlab" / "decoded"


def file_identity(path: Path) -> dict[str, Any]:
    """What identifies a source file for caching: resolved path, size and mtime in ns."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def cache_key(reader: str, files: Iterable[Path], options: dict[str, Any]) -> str:
    """A hex key for the decoded output of ``reader`` on ``files`` with ``options``."""
    payload = {
        "version": CACHE_VERSION,
        "reader": reader,
        "files": [file_identity(Path(f)) for f in files],
        "options": options,
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{reader}-{digest[:24]}"


def load_cached(key: str) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or None when absent or unreadable (a corrupt entry is removed)."""
    path = cache_dir() / f"{key}.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        if str(arrays.pop("__key__", np.array(""))) != key:
            raise ValueError("cache key mismatch")
        return arrays
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        log.warning("cache entry %s is unreadable (%s); rebuilding it", path, e)
        try:
            path.unlink()
        except OSError:
            pass
        return None


def store_cached(key: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Store ``arrays`` under ``key`` atomically and return them; a failed write is only logged."""
    folder = cache_dir()
    try:
        with atomic_path(folder / f"{key}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, __key__=np.array(key), **arrays)
    except OSError as e:
        log.warning("could not write cache entry %s in %s: %s", key, folder, e)
    return arrays
