"""EBMM gradient write rule (papers/000, eq. 3 and App. C).

From θ̄, ``steps`` gradient steps on the writing loss with one learning rate per writable layer and
per loss term, kept positive by softplus and initialised at 1e-4, all meta-learned:

    θ_l ← θ_l − Σ_j softplus(ρ_{l,j}) ∇_{θ_l} L_j(θ)

The objective returns per-episode terms (B, J) (or (B,) for one term); a layer is a parameter name
without its last component (``block4.memory.weight`` and ``.bias`` share ``block4.memory``).
Second order by default (``create_graph`` in training); ``first_order=True`` drops the inner
gradients' graph (FOMAML). In eval mode the result is detached.

Example::

    rule = build_rule("gradient", fast_names=["memory.weight", "memory.bias"], steps=3, terms=3)
    new_fast = rule(fast, episode, objective)   # objective(fast, episode) -> (B, 3)
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engramlab.errors import BadConfig, NumericalError
from engramlab.rules.base import FastParams, Objective, WriteRule, register_rule


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def term_gradients(
    terms: Tensor, names: list[str], fast: FastParams, create_graph: bool
) -> list[tuple[Tensor | None, ...]]:
    """Gradient of each term column (summed over episodes) w.r.t. every fast tensor: J tuples."""
    out = []
    for j in range(terms.shape[1]):
        if not terms[:, j].requires_grad:
            out.append((None,) * len(names))
            continue
        grads = torch.autograd.grad(
            terms[:, j].sum(), [fast[n] for n in names], create_graph=create_graph, retain_graph=True, allow_unused=True
        )
        for n, g in zip(names, grads):
            if g is not None and not torch.isfinite(g).all():
                raise NumericalError(f"write rule: gradient of loss term {j} w.r.t. '{n}' is not finite")
        out.append(grads)
    return out


def ready(fast: FastParams) -> FastParams:
    """Make every fast tensor differentiable (a leaf copy where it is not already in a graph)."""
    return {n: t if t.requires_grad else t.detach().clone().requires_grad_(True) for n, t in fast.items()}


@register_rule("gradient")
class GradientRule(WriteRule):
    """Per-layer, per-term softplus learning rates (App. C). See the module docstring."""

    def __init__(
        self,
        fast_names: list[str],
        steps: int = 1,
        terms: int = 3,
        lr_init: float = 1e-4,
        learn_lr: bool = True,
        first_order: bool = False,
    ):
        super().__init__()
        if steps < 1 or terms < 1 or lr_init <= 0 or not fast_names:
            raise BadConfig(
                f"gradient rule needs steps ≥ 1, terms ≥ 1, lr_init > 0 and fast_names; "
                f"got steps={steps}, terms={terms}, lr_init={lr_init}, fast_names={fast_names}"
            )
        self.steps, self.first_order = steps, first_order
        self.layers = sorted({n.rsplit(".", 1)[0] for n in fast_names})
        self.layer_of = {n: self.layers.index(n.rsplit(".", 1)[0]) for n in fast_names}
        raw = torch.full((len(self.layers), terms), _inverse_softplus(lr_init))
        if learn_lr:
            self.raw_lr = nn.Parameter(raw)
        else:
            self.register_buffer("raw_lr", raw)

    def rates(self) -> Tensor:
        """(layers, terms) positive learning rates."""
        return nn.functional.softplus(self.raw_lr)

    def forward(self, fast: FastParams, episode: Tensor, objective: Objective) -> FastParams:
        create = self.training and not self.first_order
        rates = self.rates()
        with torch.enable_grad():
            fast = ready(fast)
            for _ in range(self.steps):
                terms = objective(fast, episode)
                terms = terms.unsqueeze(1) if terms.dim() == 1 else terms
                if terms.shape[1] != rates.shape[1]:
                    raise BadConfig(
                        f"gradient rule has {rates.shape[1]} term rates, objective gave {terms.shape[1]} terms"
                    )
                names = list(fast)
                grads = term_gradients(terms, names, fast, create)
                new = {}
                for i, n in enumerate(names):
                    step = sum(rates[self.layer_of[n], j] * g[i] for j, g in enumerate(grads) if g[i] is not None)
                    new[n] = fast[n] - step
                fast = new if self.training else ready({n: t.detach() for n, t in new.items()})
        return fast
