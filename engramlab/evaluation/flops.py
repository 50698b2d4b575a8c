"""Matmul and convolution FLOPs of a piece of PyTorch code, counted from the shapes of the aten calls it makes.

``count_flops(fn)`` runs ``fn`` once under a ``TorchDispatchMode``, so it sees every aten matmul and convolution
that reaches the kernels: the forward, the backward the autograd engine runs, the double backward of a
``create_graph`` gradient (EBMM's write) and ``torch.func`` transforms. A ``torch.compile``'d function is run
eagerly for the count (``torch.compiler.set_stance("force_eager")``): the same math, without compiling again.

Convention: a product-sum is 2 FLOPs; a convolution's zero padding counts as taps (the convention of every conv
FLOP counter); elementwise work, reductions and data movement are not counted. Per call:

- ``mm``/``addmm`` (m×k)·(k×n): 2mkn; ``bmm``/``baddbmm``/``addbmm`` the same per batch; ``mv``/``addmv`` 2mn;
  ``dot``/``vdot`` 2n (the bias of an ``addmm`` is not counted);
- a convolution (``aten.convolution``/``_convolution``, plain or transposed, any groups):
  2 · N · |weight| · |spatial side|, where the spatial side is the output's for a plain convolution and the
  input's for a transposed one (each weight entry meets each position of that side once per sample);
- ``aten.convolution_backward``: the same count once for the input gradient and once for the weight gradient,
  each where ``output_mask`` asks for it (both are convolutions of the same size as the forward).

Why not ``torch.profiler(with_flops=True)``, which the throughput suite used before: on torch 2.13 it does not
count transposed convolutions (``aten::conv_transpose2d``) nor the convolutions of a double backward
(``aten::_convolution``: most of ebmm-conv's convolutions), and gives no count for ``convolution_backward`` (the
suite's shape formula for it was wrong for transposed convolutions); with ``record_shapes`` it also held enough of
a ~10 GB step to run out of 24 GB.
``torch.utils.flop_counter.FlopCounterMode`` fails on EBMM (its module hooks vs ``torch.autograd.grad``) and its
weight-gradient formula ignores ``groups``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

__all__ = ["FlopCount", "call_seconds", "count_flops", "kernel_seconds"]


@dataclass
class FlopCount:
    """FLOPs by kind (``matmul``, ``conv`` forward, ``conv_backward``), the counted calls by their argument
    layouts (for ``kernel_seconds``) and the names of matmul- or convolution-like aten ops seen but not counted (a
    new kernel this counter does not know)."""

    by_kind: Counter = field(default_factory=Counter)
    uncounted: set[str] = field(default_factory=set)
    calls: Counter = field(default_factory=Counter)  # (aten op, (args, kwargs) layouts) -> how many such calls

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())


def _matmul(m: int, k: int, n: int, batch: int = 1) -> int:
    return 2 * batch * m * k * n


def _conv(x: torch.Tensor, weight: torch.Tensor, out_spatial: Any, transposed: bool) -> int:
    """2 · N · |weight| · |spatial side| (the output's for a plain convolution, the input's for a transposed one)."""
    side = x.shape[2:] if transposed else out_spatial
    return 2 * x.shape[0] * weight.numel() * math.prod(side)


def _flops(packet: Any, args: tuple, out: Any) -> tuple[str, int] | None:
    """(kind, FLOPs) of one aten call, or None where it is not a matmul or convolution."""
    if packet is aten.mm:
        return "matmul", _matmul(args[0].shape[0], args[0].shape[1], args[1].shape[1])
    if packet is aten.addmm:
        return "matmul", _matmul(args[1].shape[0], args[1].shape[1], args[2].shape[1])
    if packet is aten.bmm:
        a, b = args[0], args[1]
        return "matmul", _matmul(a.shape[1], a.shape[2], b.shape[2], a.shape[0])
    if packet in (aten.baddbmm, aten.addbmm):
        a, b = args[1], args[2]
        return "matmul", _matmul(a.shape[1], a.shape[2], b.shape[2], a.shape[0])
    if packet is aten.mv:
        return "matmul", _matmul(args[0].shape[0], args[0].shape[1], 1)
    if packet is aten.addmv:
        return "matmul", _matmul(args[1].shape[0], args[1].shape[1], 1)
    if packet in (aten.dot, aten.vdot):
        return "matmul", 2 * args[0].numel()
    if packet in (aten.convolution, aten._convolution):  # (input, weight, bias, stride, padding, dilation, transposed…)
        return "conv", _conv(args[0], args[1], out.shape[2:], bool(args[6]))
    if packet is aten.convolution_backward:  # (grad_out, input, weight, …, transposed [7], …, output_mask [10])
        grad_out, x, weight, transposed, mask = args[0], args[1], args[2], bool(args[7]), args[10]
        return "conv_backward", _conv(x, weight, grad_out.shape[2:], transposed) * (int(mask[0]) + int(mask[1]))
    return None


_LOOKS_COUNTABLE = ("mm", "conv", "dot", "mv", "matmul", "linear", "einsum")


@dataclass(frozen=True)
class _Spec:
    """A tensor argument by its layout only (shape, strides, dtype): what a replay rebuilds with random values."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype

    def make(self) -> torch.Tensor:
        size = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride)) if all(self.shape) else 0
        return torch.randn(size, dtype=self.dtype).as_strided(self.shape, self.stride)  # broadcast (0) strides too


def _spec(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _Spec(tuple(value.shape), tuple(value.stride()), value.dtype)
    return tuple(_spec(v) for v in value) if isinstance(value, (list, tuple)) else value  # hashable


class _FlopMode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = FlopCount()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        counted = _flops(packet, args, out)
        if counted is not None:
            self.count.by_kind[counted[0]] += counted[1]
            layout = (tuple(_spec(a) for a in args), tuple(sorted((k, _spec(v)) for k, v in (kwargs or {}).items())))
            self.count.calls[(func, layout)] += 1
        elif any(word in packet.__name__ for word in _LOOKS_COUNTABLE):
            self.count.uncounted.add(str(packet))
        return out


def count_flops(fn: Callable[[], Any]) -> FlopCount:
    """Matmul and convolution FLOPs of one call of ``fn`` (see the module docstring); compiled code runs eagerly."""
    mode = _FlopMode()
    with torch.compiler.set_stance("force_eager"), mode:
        fn()
    return mode.count


def kernel_seconds(count: FlopCount, repeats: int = 3) -> float:
    """Seconds the counted matmul and convolution calls of ``count`` take replayed back to back on random tensors
    of their recorded shapes, strides and dtypes (each distinct call timed ``repeats`` times after one untimed run,
    median, times the number of such calls): the time a step would take if it did nothing but those kernels, with
    its inputs in cache — a lower bound on their share of the real step."""
    total = 0.0
    for (func, (specs, named)), calls in count.calls.items():
        args = [a.make() if isinstance(a, _Spec) else a for a in specs]
        kwargs = {k: v.make() if isinstance(v, _Spec) else v for k, v in named}
        total += statistics.median(call_seconds(partial(func, *args, **kwargs), repeats)) * calls
    return total


def call_seconds(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``fn``, after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
