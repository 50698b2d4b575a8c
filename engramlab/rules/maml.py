"""MAML-style write (papers/001; Finn et al. 2017): every writable parameter, one plain step size.

    θ ← θ − λ ∇_θ Σ_j L_j(θ)

λ is a single scalar (meta-learned when ``learn_lr``, not softplus-parametrised: "plain"). Second
order in training unless ``first_order``; detached in eval mode.

Example::

    rule = build_rule("maml", steps=2, lr=0.5)
    new_fast = rule(fast, episode, objective)
"""

from __future__ import annotations

import torch
from torch import nn

from engramlab.errors import BadConfig
from engramlab.rules.base import FastParams, Objective, WriteRule, register_rule
from engramlab.rules.gradient import ready, term_gradients


@register_rule("maml")
class MAMLRule(WriteRule):
    """One step size λ for all writable parameters and all loss terms."""

    def __init__(
        self,
        fast_names: list[str] | None = None,
        steps: int = 1,
        lr: float = 0.1,
        learn_lr: bool = True,
        first_order: bool = False,
        terms: int | None = None,
    ):
        """``fast_names`` and ``terms`` are accepted for a uniform interface and unused (one rate)."""
        super().__init__()
        if steps < 1 or lr <= 0:
            raise BadConfig(f"maml rule needs steps ≥ 1 and lr > 0, got steps={steps}, lr={lr}")
        self.steps, self.first_order = steps, first_order
        value = torch.tensor(float(lr))
        if learn_lr:
            self.lr = nn.Parameter(value)
        else:
            self.register_buffer("lr", value)

    def forward(self, fast: FastParams, episode: torch.Tensor, objective: Objective) -> FastParams:
        create = self.training and not self.first_order
        with torch.enable_grad():
            fast = ready(fast)
            for _ in range(self.steps):
                terms = objective(fast, episode)
                total = terms.sum(1, keepdim=True) if terms.dim() == 2 else terms.unsqueeze(1)
                names = list(fast)
                (grads,) = term_gradients(total, names, fast, create)
                new = {n: fast[n] - self.lr * g if g is not None else fast[n] for n, g in zip(names, grads)}
                fast = new if self.training else ready({n: t.detach() for n, t in new.items()})
        return fast
