"""The EBMM writing loss (papers/000, eq. 3 and App. C), one column per term.

    L_write(θ) = E(x; θ) + α‖∇ₓE(x; θ)‖² + β‖θ − θ̄‖²,   averaged over the T patterns of an episode.

The ∇ₓE term is built with ``create_graph=True`` so that a write rule can differentiate it with
respect to θ (double backward). The write rule (``engramlab.rules``) then takes gradient steps on θ
with one learning rate per writable layer and per term (App. C).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from engramlab.errors import NumericalError

FastParams = dict[str, Tensor]
EnergyFn = Callable[[Tensor, FastParams], Tensor]

TERMS = ("energy", "gradient", "prior")


def writing_terms(
    energy: EnergyFn,
    fast: FastParams,
    anchor: FastParams,
    episode: Tensor,
    alpha: float,
    beta: float,
    reduction: str = "mean",
) -> Tensor:
    """Per-episode writing-loss terms (B, 3): [mean_t E, α·mean_t ‖∇ₓE‖², β‖θ − θ̄‖²] (eq. 3).

    energy: (x (B, T, *pattern), fast) -> (B, T); fast/anchor: dicts of (B, *param) tensors, the
    current and the meta-learned (θ̄) writable parameters; episode: (B, T, *pattern).
    ``reduction="sum"`` sums the first two terms over the T patterns instead of averaging them, so
    each pattern's pull on θ does not shrink as 1/T (a learned write rate then means the same thing
    at every T, which a curriculum over T needs).
    """
    x = episode.detach().requires_grad_(True)
    e = energy(x, fast)  # (B, T)
    if not torch.isfinite(e).all():
        raise NumericalError("EBMM write: the energy of the episode is not finite (NaN/Inf)")
    (grad_x,) = torch.autograd.grad(e.sum(), x, create_graph=True)  # ∇ₓE per pattern (energies independent)
    if not torch.isfinite(grad_x).all():
        raise NumericalError("EBMM write: ∇ₓE of the episode is not finite (NaN/Inf)")
    grad_term = grad_x.pow(2).flatten(2).sum(-1)
    prior = sum((fast[n] - anchor[n]).pow(2).flatten(1).sum(1) for n in fast)
    if reduction == "sum":
        return torch.stack([e.sum(1), alpha * grad_term.sum(1), beta * prior], 1)
    return torch.stack([e.mean(1), alpha * grad_term.mean(1), beta * prior], 1)
