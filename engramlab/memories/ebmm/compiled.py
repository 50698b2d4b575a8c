"""EBMM's meta-training loss as one ``torch.compile``'d function (issue 15), behind ``EBMMConfig.compile``.

The plain meta-step (``EBMM.loss``) writes with ``torch.autograd.grad(create_graph=True)`` and reads with it
again, so its backward is a third-order pass of thousands of small elementwise kernels, each dispatched from
Python (~70% of an ebmm-strings step). ``torch.compile`` cannot trace ``torch.autograd.grad``; it can trace
``torch.func.grad``. Here the same write (the ``gradient`` or ``maml`` rule on the writing loss of eq. 3) and the
same projected Nesterov read (App. A) are written with ``torch.func.grad``, so the whole step — write, read,
step-wise loss — is one forward graph that inductor fuses, and the meta-gradient is one ordinary backward of it.

Same math as ``EBMM.loss`` (tests/memories/test_ebmm_compiled.py checks the loss and every meta-gradient against
the plain path). What the compiled step does not do, by design:

- the plain path's per-step finiteness checks (a data-dependent branch would cut the graph): a non-finite
  energy or gradient shows up as a non-finite loss, which the Trainer reports with its step;
- eval mode, reads and writes outside ``loss``, ``first_order=True`` and the ``mplp`` rule: these stay eager
  (``supported`` says why).

The first call compiles (measured on this 2-core CPU with a fresh inductor cache: 150-200 s for the ebmm-strings
quick sizes, ~15 minutes for ebmm-conv's; a rerun of the same settings loads it from torch's on-disk cache in ~8 s),
so it pays only for runs of thousands of steps: off by default. One compilation (dynamic shapes) serves episode
counts and lengths that change, with exceptions where torch specialises: a size of 1, sizes equal to each other at
the first call that later differ, and small products (B·T ≤ 32 at the first call in the tests). A failure to compile
(no C++ compiler, an unsupported backend) falls back to the plain path with one warning.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import grad

from engramlab.memories.base import Memory
from engramlab.nn.fast import Compiled
from engramlab.rules.gradient import GradientRule
from engramlab.rules.maml import MAMLRule

# ``memory`` below is an EBMM (``memories/ebmm/memory.py``, which imports this module): its ``config``, ``rule``,
# ``energy_net``, ``reader`` and ``reconstruction_loss`` are used.

FastParams = dict[str, Tensor]


def supported(memory: Memory) -> str | None:
    """None if ``memory``'s training loss can be compiled, else the reason it cannot."""
    cfg = memory.config
    if not isinstance(memory.rule, (GradientRule, MAMLRule)):
        return f"write rule '{cfg.write_rule}' (only 'gradient' and 'maml' have a compiled form)"
    if cfg.first_order:
        return "first_order=True"
    if cfg.read != "gradient":
        return f"read '{cfg.read}' (only the Nesterov read has a compiled form)"
    return None


def _terms(memory: Memory, fast: FastParams, anchor: FastParams, patterns: Tensor) -> Tensor:
    """Per-episode writing-loss terms (B, 3), as ``write.writing_terms`` (eq. 3), with ``torch.func.grad``."""
    cfg = memory.config

    def total(x: Tensor) -> tuple[Tensor, Tensor]:
        e = memory.energy_net(x, fast)
        return e.sum(), e

    grad_x, e = grad(total, has_aux=True)(patterns)  # ∇ₓE per pattern (energies independent)
    grad_term = grad_x.pow(2).flatten(2).sum(-1)
    prior = sum((fast[n] - anchor[n]).pow(2).flatten(1).sum(1) for n in fast)
    if cfg.write_reduction == "sum":
        return torch.stack([e.sum(1), cfg.alpha * grad_term.sum(1), cfg.beta * prior], 1)
    return torch.stack([e.mean(1), cfg.alpha * grad_term.mean(1), cfg.beta * prior], 1)


def _write(memory: Memory, anchor: FastParams, patterns: Tensor) -> FastParams:
    """The rule's ``write_steps`` steps from θ̄ (``GradientRule.forward`` / ``MAMLRule.forward``, training mode)."""
    rule = memory.rule
    fast = dict(anchor)
    for _ in range(rule.steps):
        if isinstance(rule, GradientRule):  # θ_l ← θ_l − ∇_{θ_l} Σ_j softplus(ρ_{l,j}) L_j (App. C)
            rates = rule.rates()
            new = dict(fast)
            for layer in range(len(rule.layers)):
                weighted = grad(lambda f, r=rates[layer]: (_terms(memory, f, anchor, patterns) * r).sum())(fast)
                for n in fast:
                    if rule.layer_of[n] == layer:
                        new[n] = fast[n] - weighted[n]
            fast = new
        else:  # MAML: θ ← θ − λ ∇_θ Σ_j L_j
            g = grad(lambda f: _terms(memory, f, anchor, patterns).sum())(fast)
            fast = {n: fast[n] - rule.lr * g[n] for n in fast}
    return fast


def _read(memory: Memory, fast: FastParams, query: Tensor) -> list[Tensor]:
    """The K iterates of projected Nesterov descent (``NesterovRead.forward`` with ``create_graph=True``)."""
    gamma, psi = memory.reader.schedule()
    low, high = memory.value_range

    def total(x: Tensor) -> Tensor:
        return memory.energy_net(x, fast).sum()

    x, v = query, torch.zeros_like(query)
    iterates = []
    for k in range(memory.reader.steps):
        x_hat = (x + psi[k] * v).clamp(low, high)
        v = psi[k] * v - gamma[k].reshape(()) * grad(total)(x_hat)
        x = (x + v).clamp(low, high)  # projection onto the data range (A.1)
        iterates.append(x)
    return iterates


def meta_loss(memory: Memory, patterns: Tensor, queries: Tensor, targets: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """(loss, logs) of ``EBMM.loss`` in training mode, written for ``torch.compile``."""
    anchor = memory.energy_net.initial_fast(patterns.shape[0])
    iterates = _read(memory, _write(memory, anchor, patterns), queries)
    used = iterates if memory.config.loss_steps == "all" else iterates[-1:]
    loss = sum(memory.reconstruction_loss(x, targets) for x in used)
    return loss, memory.read_logs(iterates[-1], targets)


def _plain(*args: object) -> None:
    return None  # compilation failed: EBMM.loss runs its plain step


# ``meta_loss`` through ``torch.compile`` (dynamic shapes, see the module docstring; the memory is an argument whose
# parameters are graph inputs, so memories of the same settings share one compilation, each with its own weights;
# other settings compile anew, up to torch's cache limit, after which torch runs this eagerly): (loss, logs), or None
# once compilation has failed in this process (the caller then runs the plain loss; one warning).
compiled_meta_loss = Compiled(meta_loss, "EBMM", fallback=_plain, dynamic=True)
