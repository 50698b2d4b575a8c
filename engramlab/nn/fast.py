"""Switch for the library's fast paths (issue 15): computations rewritten for speed that keep the same math.

Every fast path has a plain counterpart that it must agree with (to 1e-5 on a fixed batch; tests under
``tests/evaluation/test_throughput*.py``). Both stay in the code so the speed-up can be measured in the
same run (``engram bench throughput``) and the fast path checked against the plain one at any time.
Fast paths are on by default; ``with fast_paths(False):`` runs the plain code, like a ``torch.backends``
flag (process-wide, not thread-local).

Example::

    with fast_paths(False):
        plain = memory.loss(batch)[0]
    fast = memory.loss(batch)[0]
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_enabled = True


def fast_paths_enabled() -> bool:
    """Whether the fast paths are used (True unless inside ``fast_paths(False)``)."""
    return _enabled


@contextmanager
def fast_paths(enabled: bool) -> Iterator[None]:
    """Use the fast paths (True) or the plain code (False) inside the ``with`` block."""
    global _enabled
    before, _enabled = _enabled, bool(enabled)
    try:
        yield
    finally:
        _enabled = before
