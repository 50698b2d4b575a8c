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
from collections.abc import Sequence

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
        out.append(finite_grads(terms[:, j].sum(), names, fast, create_graph, f"loss term {j}"))
    return out


def finite_grads(
    loss: Tensor, names: list[str], fast: FastParams, create_graph: bool, what: str
) -> tuple[Tensor | None, ...]:
    """∇ of the scalar ``loss`` w.r.t. ``fast[n]`` for ``names`` (None where unused); NumericalError naming
    ``what`` and the tensor if a gradient is not finite."""
    grads = torch.autograd.grad(
        loss, [fast[n] for n in names], create_graph=create_graph, retain_graph=True, allow_unused=True
    )
    for n, g in zip(names, grads):
        if g is not None and not torch.isfinite(g).all():
            raise NumericalError(f"write rule: gradient of {what} w.r.t. '{n}' is not finite")
    return grads


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
        lr_init: float | Sequence[float] = 1e-4,
        learn_lr: bool = True,
        first_order: bool = False,
    ):
        """``lr_init``: one initial rate for every (layer, term), or one per term (App. C uses 1e-4)."""
        super().__init__()
        inits = [float(lr_init)] * terms if isinstance(lr_init, (int, float)) else [float(v) for v in lr_init]
        if len(inits) != terms:
            raise BadConfig(f"gradient rule: lr_init needs one rate per term ({terms}), got {list(lr_init)}")
        if steps < 1 or terms < 1 or not inits or min(inits) <= 0 or not fast_names:
            raise BadConfig(
                f"gradient rule needs steps ≥ 1, terms ≥ 1, lr_init > 0 and fast_names; "
                f"got steps={steps}, terms={terms}, lr_init={lr_init}, fast_names={fast_names}"
            )
        self.steps, self.first_order = steps, first_order
        self.layers = sorted({n.rsplit(".", 1)[0] for n in fast_names})
        self.layer_of = {n: self.layers.index(n.rsplit(".", 1)[0]) for n in fast_names}
        raw = torch.tensor([_inverse_softplus(v) for v in inits]).repeat(len(self.layers), 1)
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
                steps = self.layer_steps(terms, rates, fast) if create else self.term_steps(terms, rates, fast)
                new = {n: fast[n] - steps[n] for n in fast}
                fast = new if self.training else ready({n: t.detach() for n, t in new.items()})
        return fast

    def term_steps(self, terms: Tensor, rates: Tensor, fast: FastParams) -> FastParams:
        """Σ_j ρ_{l,j} ∇_{θ_l} L_j with one backward pass per term (the rates enter after the backward,
        so they get a meta-gradient even when the inner gradients are detached: first order, eval)."""
        names = list(fast)
        grads = term_gradients(terms, names, fast, self.training and not self.first_order)
        out = {}
        for i, n in enumerate(names):
            parts = [rates[self.layer_of[n], j] * g[i] for j, g in enumerate(grads) if g[i] is not None]
            out[n] = sum(parts) if parts else torch.zeros_like(fast[n])
        return out

    def layer_steps(self, terms: Tensor, rates: Tensor, fast: FastParams) -> FastParams:
        """The same step with one (double-)backward pass per writable layer, ∇_{θ_l} Σ_j ρ_{l,j} L_j, which
        is fewer passes than one per term whenever there are fewer layers than terms (linearity of ∇)."""
        if len(self.layers) >= terms.shape[1]:
            return self.term_steps(terms, rates, fast)
        out = {}
        for layer in range(len(self.layers)):
            names = [n for n in fast if self.layer_of[n] == layer]
            grads = finite_grads((terms * rates[layer]).sum(), names, fast, True, "the writing loss")
            for n, g in zip(names, grads):
                out[n] = g if g is not None else torch.zeros_like(fast[n])
        return out
