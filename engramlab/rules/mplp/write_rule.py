"""MPLP as a memory write rule ("mplp"; paper 004 applied to EBMM's writable layers, issue 7 item 5).

A WriteRule sees the memory only through ``objective(fast, episode) -> (B,) or (B, J)`` per-episode
losses, not through its graph of nodes, so the backward messages cannot be learned node by node as in
:class:`~engramlab.rules.mplp.protocol.MPLP`. Here the message reaching each synapse is the hand-set one
(the back-propagated gradient of each loss term, which is what the hand-set MPLP rule computes, see
``hand_set_sgd``), and the update rule f is learned: a stateful GRU learner (eqs. 10-12) per synapse,
shared by all writable tensors, with input ``[∂L_1/∂w, ..., ∂L_J/∂w, w]``, inputs standardised with
statistics frozen after the first ``calibrate_calls`` training calls, and outputs centred and scaled to
0.2·std of the tensor's initial weights times a meta-trained scale per tensor (Sec. 3, Normalization).
Batched over episodes: every synapse of every episode runs through the learner at once.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engramlab.errors import BadConfig, NumericalError
from engramlab.rules.base import FastParams, Objective, WriteRule, register_rule
from engramlab.rules.gradient import ready, term_gradients
from engramlab.rules.mplp.protocol import GRULearner, MLPLearner, OutputScaler, Standardizer


@register_rule("mplp")
class MPLPWriteRule(WriteRule):
    """Learned per-synapse update rule driven by gradient messages (see the module docstring).

    Args:
        fast_names: the memory's writable tensors (names of the fast dict).
        steps: write steps.
        terms: loss terms J the objective returns.
        learner: "gru" (stateful, hidden ``hidden``) or "mlp" (stateless 80-40 tanh).
        calibrate_calls: training-mode calls whose inputs/outputs set the frozen normalisation statistics.
        first_order: drop the graph of the inner gradients (as FOMAML).
        lr_init, learn_lr: accepted so that memories building every rule with the same keywords (EBMM)
            can use this one; unused (the update scale is MPLP's 0.2·std times a meta-trained scale).
    """

    def __init__(
        self,
        fast_names: list[str],
        steps: int = 1,
        terms: int = 1,
        learner: str = "gru",
        hidden: int = 8,
        calibrate_calls: int = 4,
        first_order: bool = False,
        lr_init: float | None = None,
        learn_lr: bool = True,
    ) -> None:
        super().__init__()
        if steps < 1 or terms < 1 or not fast_names:
            raise BadConfig(f"mplp rule needs steps ≥ 1, terms ≥ 1 and fast_names; got {steps}, {terms}, {fast_names}")
        self.names, self.steps, self.terms, self.first_order = list(fast_names), steps, terms, first_order
        if learner == "gru":
            self.learner = GRULearner(terms + 1, 1, hidden)
        elif learner == "mlp":
            self.learner = MLPLearner(terms + 1, 1)
        else:
            raise BadConfig(f"mplp rule learner must be 'gru' or 'mlp', got {learner!r}")
        self.standardizers = nn.ModuleDict({self._key(n): Standardizer(terms + 1) for n in fast_names})
        self.scalers = nn.ModuleDict({self._key(n): OutputScaler() for n in fast_names})
        self.calibrate_calls = calibrate_calls
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def _set_calibrating(self, on: bool) -> None:
        for mod in (*self.standardizers.values(), *self.scalers.values()):
            mod.calibrating = on

    def forward(self, fast: FastParams, episode: Tensor, objective: Objective) -> FastParams:
        missing = [n for n in self.names if n not in fast]
        if missing:
            raise BadConfig(f"mplp rule was built for fast tensors {self.names}; missing {missing}")
        calibrating = self.training and int(self.calls) < self.calibrate_calls
        self._set_calibrating(calibrating)
        if self.training:
            self.calls += 1
        create = self.training and not self.first_order
        state = {n: self.learner.init_state(fast[n].shape, fast[n]) for n in self.names}
        try:
            with torch.enable_grad():
                fast = ready(fast)
                for _ in range(self.steps):
                    terms = objective(fast, episode)
                    terms = terms.unsqueeze(1) if terms.dim() == 1 else terms
                    if terms.shape[1] != self.terms:
                        raise BadConfig(f"mplp rule expects {self.terms} loss terms, objective gave {terms.shape[1]}")
                    grads = term_gradients(terms, self.names, fast, create)
                    new = dict(fast)
                    for i, n in enumerate(self.names):
                        w = fast[n]
                        msgs = [g[i] if g[i] is not None else torch.zeros_like(w) for g in grads]
                        feats = torch.stack([*msgs, w], dim=-1).unsqueeze(1)  # (B, 1, *shape, J+1): one "shot"
                        if not torch.isfinite(feats).all():
                            raise NumericalError(f"mplp rule: non-finite gradient message for '{n}'")
                        out, state[n] = self.learner(self.standardizers[self._key(n)](feats), state[n])
                        new[n] = w + self.scalers[self._key(n)](out[:, 0, ..., 0], w)
                    fast = new if self.training else {n: t.detach().requires_grad_(True) for n, t in new.items()}
        finally:
            self._set_calibrating(False)
        return fast if self.training else {n: t.detach() for n, t in fast.items()}
