"""Issue 12's checks that EBMM works as a memory: the meta-gradient against finite differences, and the
diagnostics (energy order, fixed points, projected gradient, episode-specific writes, swapped memories)
on a trained small model and on hand-built cases where the answer is known."""

import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.memories.base import build_memory
from engramlab.memories.ebmm import diagnostics as diag

TINY = dict(hidden_size=10, hops=2, write_steps=2, read_steps=2, write_lr=0.3, read_gamma=0.2, alpha=0.5, beta=0.3)


def test_meta_gradient_matches_finite_differences_in_float64(gen):
    """d(loss)/d(every meta-parameter) through the second-order write and the read, along a random
    direction, against a central difference (float64; patterns inside the box so the projection is
    inactive and the loss is smooth)."""
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", pattern_shape=(8,), dynamic_size=3, **TINY).double()
    x = (torch.randint(0, 2, (2, 3, 8), generator=gen).double() * 2 - 1) * 0.5
    q = x * (1 - 0.6 * (torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.25))
    batch = EpisodeBatch(patterns=x, queries=q, targets=x)
    params = [p for p in mem.parameters() if p.requires_grad]
    loss, _ = mem.loss(batch)
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # the energy's output bias cancels in ∇ₓE
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-5

    def shifted(sign):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
        value = mem.loss(batch)[0].detach()
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
        return value

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert abs(float(analytic) - float(numeric)) < 1e-6 * max(1.0, abs(float(numeric)))


def test_projected_gradient_zeroes_only_components_pushing_out_of_the_box():
    x = torch.tensor([[[1.0, -1.0, 0.2, 1.0]]])
    grad = torch.tensor([[[-2.0, 3.0, 1.0, 0.5]]])  # −grad: out, out, in, in
    out = diag.projected_gradient(grad, x, -1.0, 1.0)
    assert out.tolist() == [[[0.0, 0.0, -1.0, -0.5]]]


def test_write_specificity_is_zero_when_every_episode_writes_the_same_patterns(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), hidden_size=32, write_lr=0.1)
    one = torch.randint(0, 2, (1, 3, 16), generator=gen).float() * 2 - 1
    same = EpisodeBatch(patterns=one.expand(4, 3, 16), queries=one.expand(4, 3, 16), targets=one.expand(4, 3, 16))
    assert diag.write_specificity(mem, same)["write_specificity"] < 1e-5
    different = torch.randint(0, 2, (4, 3, 16), generator=gen).float() * 2 - 1
    batch = EpisodeBatch(patterns=different, queries=different, targets=different)
    assert diag.write_specificity(mem, batch)["write_specificity"] > 0.3
