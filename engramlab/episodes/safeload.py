"""Reading data files that may come from anywhere without running code or leaving the data folder.

- ``load_plain_pickle``: a restricted unpickler for the CIFAR-10 python batches. It builds only
  dict, list, tuple, bytes, str, int, float, bool, None and numpy arrays of plain dtypes (through
  numpy's own reconstruct functions); any other global a pickle names (``os.system``,
  ``builtins.eval``, a class with ``__reduce__``) is refused before it is looked up.
- ``data_file``: a path that must be a regular file inside its data directory once symlinks are
  resolved (no link out of the folder, no FIFO or device that would block or never end).
- ``zip_member_ok``: a zip entry name that is relative and has no ``..`` component.

Example::

    with open(path, "rb") as f:
        batch = load_plain_pickle(f)        # pickle.UnpicklingError on anything but plain data
    path = data_file(root / "mnist" / "t10k-images-idx3-ubyte.gz", root)
"""

from __future__ import annotations

import pickle
import stat
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

from engramlab.errors import DataError


def _plain_dtype(*args: Any) -> np.dtype:
    """``numpy.dtype`` for plain (non-object) dtypes only."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError(f"refusing an array of Python objects (dtype {dtype})")
    return dtype


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode(str, "latin1")``: how Python 3 spells bytes in protocol-2 pickles."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a plain-data pickle may name, under every module name numpy has used.

    CIFAR-10 was pickled by Python 2 (``numpy.core.multiarray._reconstruct``); numpy 2 writes
    ``numpy._core``. The functions are taken from what this numpy's arrays reduce to, so no module
    is imported by a name read from a file.
    """
    reconstruct = np.zeros(1).__reduce__()[0]
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _plain_dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    return allowed


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global except numpy's array rebuilders (see module doc)."""

    allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(f"refusing to load global '{module}.{name}': not a plain data type")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing a persistent id")


def load_plain_pickle(file: IO[bytes]) -> Any:
    """Unpickle plain data from an open binary file (Python 2 strings decoded as bytes).

    Raises pickle.UnpicklingError for any global outside the allowed numpy rebuilders, and the
    usual EOFError/ValueError/... for a truncated or damaged stream.
    """
    return PlainUnpickler(file, encoding="bytes").load()


def data_file(path: str | Path, root: str | Path) -> Path:
    """``path`` after checking it is a regular file inside ``root`` once symlinks are resolved.

    ``root`` itself may be a symlink (a data folder on another disk); a link *inside* it that leads
    out of it, a FIFO, a device or a folder raises DataError.
    """
    path, real_root = Path(path), Path(root).resolve()
    real = path.resolve()
    if real_root != real and real_root not in real.parents:
        raise DataError(
            f"refusing to read {path}: it resolves to {real}, outside the data directory {real_root} "
            "(a symlink?); copy the file into the data directory or point --data-dir at its folder"
        )
    try:
        mode = real.stat().st_mode
    except OSError as e:
        raise DataError(f"cannot read data file {path}: {e}") from e
    if not stat.S_ISREG(mode):
        raise DataError(f"refusing to read {path}: not a regular file")
    return path


def zip_member_ok(name: str) -> bool:
    """True when a zip entry name is relative and has no ``..`` component (POSIX or Windows style)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and not name.startswith(("/", "\\")) and ":" not in parts[0] and ".." not in parts
