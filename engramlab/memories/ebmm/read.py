"""EBMM reads (papers/000, App. A; papers/001 for the decoder read).

Projected Nesterov descent on the energy (App. A.1-A.2), for k = 1..K:

    x̂ = proj(x + ψ(k) v),   v ← ψ(k) v − γ(k) ∇ₓE(x̂),   x ← proj(x + v)

(the appendix prints ``x(k) = project(v(k))``; we read it as the usual x + v). Step sizes are
non-increasing: γ(k) = γ(k−1)·σ(η(k)) (App. A.3), γ(1) = softplus(·) and η meta-learned; the momentum
ψ(k) = ψ(k−1)·σ(ζ(k)) with ψ(1) = σ(·) likewise. ``learn=False`` keeps them fixed (the failing
fixed schedule of papers/001: γ(1) = 500, halving per step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from engramlab.errors import NumericalError

FastParams = dict[str, Tensor]


def inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class NesterovRead(nn.Module):
    """K steps of projected Nesterov descent on E(·; θ) with meta-learned non-increasing step sizes.

    Args:
        steps: K.
        gamma: γ(1). decay: σ(η(k)) at initialisation. momentum: ψ(1) in (0, 1).
        learn: meta-learn γ(1), η, ψ(1), ζ (True) or keep them fixed.
    """

    def __init__(self, steps: int, gamma: float, decay: float, momentum: float, learn: bool = True):
        super().__init__()
        self.steps = steps
        values = {
            "raw_gamma": torch.tensor(inverse_softplus(gamma)),
            "eta": torch.full((max(steps - 1, 0),), logit(decay)),
            "raw_momentum": torch.tensor(logit(momentum)),
            "zeta": torch.full((max(steps - 1, 0),), logit(0.999)),
        }
        for name, value in values.items():
            if learn:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def schedule(self) -> tuple[Tensor, Tensor]:
        """(γ(1..K), ψ(1..K)), each (K,): cumulative products of sigmoids (App. A.3)."""
        ones = self.raw_gamma.new_ones(1)
        gamma = nn.functional.softplus(self.raw_gamma) * torch.cat([ones, torch.sigmoid(self.eta)]).cumprod(0)
        psi = torch.sigmoid(self.raw_momentum) * torch.cat([ones, torch.sigmoid(self.zeta)]).cumprod(0)
        return gamma, psi

    def forward(
        self, energy: Callable[[Tensor], Tensor], query: Tensor, low: float, high: float, create_graph: bool
    ) -> list[Tensor]:
        """query: (B, N, *pattern) -> the K iterates, each (B, N, *pattern); energy: x -> (B, N)."""
        gamma, psi = self.schedule()
        x, v = query, torch.zeros_like(query)
        iterates = []
        for k in range(self.steps):
            x_hat = (x + psi[k] * v).clamp(low, high)
            if not create_graph:
                x_hat = x_hat.detach()
            if not x_hat.requires_grad:
                x_hat = x_hat.requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(x_hat).sum(), x_hat, create_graph=create_graph)
            if not torch.isfinite(grad).all():
                raise NumericalError(f"EBMM read: ∇ₓE is not finite at read step {k + 1}")
            v = psi[k] * v - gamma[k].reshape(()) * grad
            x = (x + v).clamp(low, high)  # projection onto the data range (A.1)
            if not create_graph:
                x, v = x.detach(), v.detach()
            iterates.append(x)
        return iterates


class DecoderRead(nn.Module):
    """Learned-decoder read (papers/001, option 1): a static network maps [query, ∇ₓE(query; θ)] to
    a reconstruction in the data range, so the written memory enters through its energy gradient
    [inferred: the report does not say what its decoder reads]. (B, N, *pattern) -> one iterate.
    """

    def __init__(self, pattern_shape: tuple[int, ...], width: int = 64):
        super().__init__()
        if len(pattern_shape) == 3:
            c = pattern_shape[0]
            self.net = nn.Sequential(
                nn.Conv2d(2 * c, width, 3, 1, 1),
                nn.Tanh(),
                nn.Conv2d(width, width, 3, 1, 1),
                nn.Tanh(),
                nn.Conv2d(width, c, 3, 1, 1),
            )
        else:
            d = math.prod(pattern_shape)
            self.net = nn.Sequential(nn.Linear(2 * d, 4 * width), nn.Tanh(), nn.Linear(4 * width, d))
        self.pattern_shape = pattern_shape

    def forward(
        self, energy: Callable[[Tensor], Tensor], query: Tensor, low: float, high: float, create_graph: bool
    ) -> list[Tensor]:
        x = query.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy(x).sum(), x, create_graph=create_graph)
        if not torch.isfinite(grad).all():
            raise NumericalError("EBMM decoder read: ∇ₓE of the query is not finite")
        b, n = query.shape[:2]
        if len(self.pattern_shape) == 3:
            inp = torch.cat([query, grad], 2).flatten(0, 1)
        else:
            inp = torch.cat([query.flatten(2), grad.flatten(2)], -1).flatten(0, 1)
        out = torch.sigmoid(self.net(inp)).reshape(b, n, *self.pattern_shape)
        return [low + (high - low) * out]
