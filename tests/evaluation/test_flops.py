"""The FLOP counter (engramlab.evaluation.flops) against hand formulas and against brute force: every convolution
is also written as unfold/fold + (batched) matmul, whose FLOPs are only matmuls, and both forms must count the
same through forward, backward and the double backward of a create_graph gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engramlab.evaluation.flops import count_flops


def conv_by_matmul(x, w, stride, padding, groups):
    """F.conv2d as unfold + one bmm over groups."""
    n, _, h, _ = x.shape
    out, cg, k, _ = w.shape
    cols = F.unfold(x, k, padding=padding, stride=stride)  # (n, C·k·k, L), channels outermost
    length = cols.shape[-1]
    cols = cols.view(n, groups, cg * k * k, length).permute(1, 0, 3, 2).reshape(groups, n * length, cg * k * k)
    y = torch.bmm(cols, w.view(groups, out // groups, cg * k * k).transpose(1, 2))
    h_out = (h + 2 * padding - k) // stride + 1
    return y.view(groups, n, length, out // groups).permute(1, 0, 3, 2).reshape(n, out, h_out, -1)


def conv_transpose_by_matmul(x, w, stride, padding, groups, out_size):
    """F.conv_transpose2d as one bmm over groups + fold."""
    n, c_in, h, wd = x.shape
    _, og, k, _ = w.shape
    xs = x.reshape(n, groups, c_in // groups, h * wd).permute(1, 0, 3, 2).reshape(groups, n * h * wd, -1)
    y = torch.bmm(xs, w.reshape(groups, c_in // groups, og * k * k))
    y = y.view(groups, n, h * wd, og * k * k).permute(1, 0, 3, 2).reshape(n, groups * og * k * k, h * wd)
    return F.fold(y, out_size, k, padding=padding, stride=stride)


def test_linear_forward_backward_by_hand():
    layer = nn.Linear(32, 16)
    x = torch.randn(8, 32, requires_grad=True)
    count = count_flops(lambda: layer(x).sum().backward())
    # forward 2·8·32·16; backward: input and weight gradients, the same each (the bias is not counted)
    assert count.total == count.by_kind["matmul"] == 3 * 2 * 8 * 32 * 16
    assert not count.uncounted


def test_conv_forward_by_hand():
    x, w = torch.randn(2, 4, 10, 10), torch.randn(8, 4, 3, 3)
    count = count_flops(lambda: F.conv2d(x, w, padding=1))
    assert count.by_kind == {"conv": 2 * 2 * 8 * 10 * 10 * 4 * 9}


@pytest.mark.parametrize(("stride", "padding", "groups"), [(1, 1, 1), (2, 1, 1), (1, 0, 3), (2, 1, 2)])
def test_conv_counts_like_its_matmul_form(stride, padding, groups):
    torch.manual_seed(0)
    x = torch.randn(3, 6, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 6 // groups, 3, 3, dtype=torch.float64, requires_grad=True)
    conv = lambda: F.conv2d(x, w, stride=stride, padding=padding, groups=groups)  # noqa: E731
    brute = lambda: conv_by_matmul(x, w, stride, padding, groups)  # noqa: E731
    torch.testing.assert_close(conv(), brute())
    forward = count_flops(lambda: conv().sum()).total
    assert forward == count_flops(lambda: brute().sum()).total
    both = count_flops(lambda: conv().square().sum().backward())
    assert both.total == count_flops(lambda: brute().square().sum().backward()).total == 3 * forward
    assert both.by_kind["conv_backward"] == 2 * forward
    x.requires_grad_(False)  # a first layer: the weight gradient only
    assert count_flops(lambda: conv().square().sum().backward()).total == 2 * forward
    assert count_flops(lambda: brute().square().sum().backward()).total == 2 * forward


@pytest.mark.parametrize(("stride", "padding", "groups"), [(2, 1, 1), (1, 1, 1), (2, 0, 2)])
def test_transposed_conv_counts_like_its_matmul_form(stride, padding, groups):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 6 // groups, 4, 4, dtype=torch.float64, requires_grad=True)
    conv = lambda: F.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)  # noqa: E731
    size = tuple(conv().shape[-2:])
    brute = lambda: conv_transpose_by_matmul(x, w, stride, padding, groups, size)  # noqa: E731
    torch.testing.assert_close(conv(), brute())
    forward = count_flops(lambda: conv().sum()).total
    assert forward == count_flops(lambda: brute().sum()).total == 2 * 3 * 25 * w.numel()
    assert count_flops(lambda: conv().square().sum().backward()).total == 3 * forward
    assert count_flops(lambda: brute().square().sum().backward()).total == 3 * forward


@pytest.mark.parametrize("groups", [1, 2])
def test_double_backward_counts_like_its_matmul_form(groups):
    """EBMM's write: a gradient taken with create_graph, then a meta-gradient through it."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 7, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4 // groups, 3, 3, dtype=torch.float64, requires_grad=True)

    def meta(form):
        def run():
            energy = form().square().sum()
            (grad_w,) = torch.autograd.grad(energy, w, create_graph=True)
            (grad_w - 1).square().sum().backward()

        return run

    conv = count_flops(meta(lambda: F.conv2d(x, w, padding=1, groups=groups)))
    brute = count_flops(meta(lambda: conv_by_matmul(x, w, 1, 1, groups)))
    assert conv.total == brute.total > 0
    assert not conv.uncounted and not brute.uncounted


def test_compiled_function_is_counted_eagerly():
    a, b = torch.randn(8, 16), torch.randn(16, 4)
    compiled = torch.compile(lambda: a @ b, backend="eager")
    assert count_flops(compiled).total == 2 * 8 * 16 * 4


def test_unknown_matmul_kernels_are_named_not_counted():
    a = torch.randint(-4, 4, (32, 32), dtype=torch.int8)
    count = count_flops(lambda: torch._int_mm(a, a))
    assert count.total == 0 and count.uncounted == {"aten._int_mm"}


def test_calls_are_recorded_by_layout_and_replayed():
    """kernel_seconds replays each counted call on random tensors of the same shapes, strides (a transposed and
    a broadcast operand here) and dtype, as often as the step made it."""
    from engramlab.evaluation.flops import _Spec, kernel_seconds

    a, b = torch.randn(16, 8), torch.randn(4, 8).t()  # b: (8, 4), strides (1, 8)
    bias = torch.randn(1, 4).expand(16, 4)  # stride 0 along rows
    conv, x = nn.Conv2d(2, 3, 3, padding=1), torch.randn(1, 2, 5, 5)

    def step():
        torch.addmm(bias, a, b)
        torch.addmm(bias, a, b)
        conv(x)  # list arguments (stride, padding)

    count = count_flops(step)
    assert sum(count.calls.values()) == 3 and len(count.calls) == 2
    (addmm,) = [specs for (func, (specs, _)) in count.calls if func._overloadpacket is torch.ops.aten.addmm]
    assert count.calls[(torch.ops.aten.addmm.default, (addmm, ()))] == 2
    for spec, tensor in zip(addmm, (bias, a, b)):
        made = spec.make()
        assert isinstance(spec, _Spec) and made.shape == tensor.shape and made.stride() == tensor.stride()
    assert kernel_seconds(count, repeats=1) > 0
    scaled = count_flops(lambda: torch.addmm(bias, a, b, beta=0.5))  # a keyword argument is replayed too
    assert [named for _, (_, named) in scaled.calls] == [(("beta", 0.5),)] and kernel_seconds(scaled, 1) > 0
