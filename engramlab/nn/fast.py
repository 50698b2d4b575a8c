"""Switch for the library's fast paths (issue 15): computations rewritten for speed that keep the same math.

Every fast path has a plain counterpart that it must agree with (to 1e-5 on a fixed batch; tests under
``tests/evaluation/test_throughput*.py``). Both stay in the code so the speed-up can be measured in the
same run (``engram bench throughput``) and the fast path checked against the plain one at any time.
Fast paths are on by default; ``with fast_paths(False):`` runs the plain code, like a ``torch.backends``
flag (process-wide, not thread-local).

Fast paths: EBMM's fused gated-RNN hops (``memories/ebmm/energy.py``), torch's fused Adam / AdamW (``adam``
below, used by every trainer) and the decoders' channels-last pixel head (``OutputConv2d`` below).

``Compiled(fn, what)`` is the library's one way to ``torch.compile`` a function (EBMM's meta-loss, MPLP's learner
cells): compiled while the fast paths are on, with one fallback to ``fn`` for the rest of the process when
compilation fails.

``keep_freed_memory()`` is a process-wide setting rather than a fast path (it cannot be switched back): the
``engram`` command calls it at start; a script of one's own may call it too.

Example::

    with fast_paths(False):
        plain = memory.loss(batch)[0]
    fast = memory.loss(batch)[0]
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

log = logging.getLogger(__name__)

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


class Compiled:
    """``fn`` through ``torch.compile(fn, **options)``, built at the first call; the plain ``fn`` inside
    ``fast_paths(False)``. Where compilation fails (no C++ compiler, an unsupported backend, a tracing error: torch
    raises many types) it logs one warning naming ``what`` and runs ``fallback`` (default ``fn``) from then on. An
    exception raised by ``fn`` itself therefore also switches compilation off, after which the fallback raises it
    again. The compilation is not pickled or copied with its owner (``__getstate__``)."""

    def __init__(self, fn: Callable[..., Any], what: str, fallback: Callable[..., Any] | None = None, **options: Any):
        self.fn, self.what, self.options = fn, what, options
        self.fallback = fn if fallback is None else fallback
        self.failed, self._compiled = False, None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.failed or not _enabled:
            return (self.fallback if self.failed else self.fn)(*args, **kwargs)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, **self.options)
        try:
            return self._compiled(*args, **kwargs)
        except Exception as err:  # torch.compile fails in many types (backend, C++ toolchain, tracing)
            self.failed = True
            log.warning("%s: torch.compile failed (%s: %s); running the plain code", self.what, type(err).__name__, err)
            return self.fallback(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_compiled": None}


def _fusable(params: list) -> bool:
    """Whether every parameter (plain list or param groups) is a floating tensor on a CPU or CUDA device."""
    tensors = [p for g in params for p in g["params"]] if isinstance(params[0], dict) else params
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)


def adam(params, kind: str = "adam", **options: Any) -> torch.optim.Optimizer:
    """Adam or AdamW (``kind``) over ``params``; with the fast paths on, torch's fused implementation (one kernel for
    every tensor instead of a Python loop over them: 4-14× faster optimiser steps on this CPU, issue 15), the same
    update to float rounding (tests/evaluation/test_throughput_fast_paths.py)."""
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[kind]
    params = [{**g, "params": list(g["params"])} if isinstance(g, dict) else g for g in params]  # generators once
    fused = fast_paths_enabled() and bool(params) and _fusable(params)
    return cls(params, fused=True, **options) if fused else cls(params, **options)


class _ChannelsLast(torch.autograd.Function):
    """x in channels-last memory format; its gradient handed back contiguous (the layers before it keep their
    usual layout in the backward pass too)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous()


class OutputConv2d(torch.nn.Conv2d):
    """A ``Conv2d`` with few output channels, as a decoder's last (pixel-parameter) layer: the same layer and
    parameters, but with the fast paths on, a CPU input is made channels-last first. oneDNN's kernels for a
    convolution to 1-2 channels are several times faster on channels-last data on this CPU (8 → 1 channels, 3×3,
    128 × 28 × 28, forward + backward: 2.5-3×, issue 15); the output is returned contiguous, as the plain
    layer's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _enabled and x.device.type == "cpu" and x.dim() == 4:
            return super().forward(_ChannelsLast.apply(x)).contiguous()
        return super().forward(x)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_kept = False


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of handing it back to the kernel (issue 15).

    By default glibc serves a large block (over 128 KiB, a bound it raises up to 32 MiB as blocks are freed) by a
    fresh ``mmap`` and returns it with ``munmap``, and trims the heap top once 128-256 KiB of it is free. A training
    step allocates the same large activations every step, so every step page-faults all of them in anew (the kernel
    zeroes each 4 KiB page): ~2,800 faults and ~20% of the CPU time of a vbm-cat quick step, ~58,000 of an MPLP
    MNIST step (``getrusage`` minflt, measured). Here every block comes from the heap (no ``mmap``) and up to 1 GiB
    of free heap top is kept, so after the first steps a step reuses memory it has already touched. The cost: the
    resident size stays at its peak. Process-wide and not undone; the math is untouched. A no-op returning False
    where the C library is not glibc; True once the setting is in force.
    """
    global _kept
    if _kept:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc's mallopt tunables only
        return False
    mallopt = libc.mallopt
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = [mallopt(_M_MMAP_MAX, 0), mallopt(_M_TRIM_THRESHOLD, 1 << 30)]  # no mmap: every block from the heap
    done.append(mallopt(_M_TOP_PAD, 64 << 20))  # grow the heap in 64 MiB steps: fewer brk calls
    _kept = all(r == 1 for r in done)
    return _kept
