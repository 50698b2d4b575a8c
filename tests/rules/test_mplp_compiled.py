"""MPLP(compile=True): the learner cells through torch.compile (issue 15) compute what the eager cells do."""

from __future__ import annotations

import logging

import pytest
import torch

from engramlab.nn.fast import Compiled, fast_paths
from engramlab.rules.mplp.meta import MPLPMetaLearner
from engramlab.rules.mplp.tasks import SinusoidSource


def _model(compile: bool, learner: str = "gru") -> MPLPMetaLearner:
    torch.manual_seed(0)
    options = {"compile": compile}
    return MPLPMetaLearner((1, 6, 1), learner=learner, hidden=5, message_size=3, rule_options=options)


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    loss, _ = model.loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same(model, batch, tol):
    with fast_paths(False):  # the eager cells
        plain_loss, plain_grads = _loss_and_grads(model, batch)
    loss, grads = _loss_and_grads(model, batch)
    assert abs(float(loss - plain_loss)) <= tol * max(1.0, abs(float(plain_loss)))
    assert sorted(grads) == sorted(plain_grads)
    for name, g in plain_grads.items():
        assert float((grads[name] - g).abs().max()) <= tol * float(g.abs().max().clamp_min(1.0)), name


def test_every_learner_call_goes_through_its_cell(monkeypatch):
    """With compile on, each learner (loss, activation, weight, bias) runs through one ``Compiled`` cell per call
    kind; ``torch.compile`` itself is replaced by the identity here (the slow test below compiles)."""
    monkeypatch.setattr(torch, "compile", lambda fn, **options: fn)
    model = _model(True)
    batch = SinusoidSource(steps=2, shots=4, tasks=2, test_points=3).batch(0)
    _assert_same(model, batch, tol=0.0)  # the identity "compilation": exactly the eager cells
    cells = model.rule._cells
    assert all(isinstance(c, Compiled) and c._compiled is not None for c in cells.values())
    kinds = {(type(model.rule._wl(0)).__name__, parts) for (_, parts) in cells}
    assert kinds == {("GRULearner", True), ("GRULearner", False)}
    assert len(cells) == 6  # loss, act, 2 bias learners (forward), 2 weight learners (forward_parts): per layer
    assert _model(False).rule._cells == {}  # off by default: no cells


def test_a_failed_compilation_runs_the_eager_cells(monkeypatch, caplog):
    def broken(fn, **options):
        def fail(*args, **kwargs):
            raise RuntimeError("no C++ compiler")

        return fail

    monkeypatch.setattr(torch, "compile", broken)
    model = _model(True, learner="mlp")
    batch = SinusoidSource(steps=2, shots=4, tasks=2, test_points=3).batch(0)
    with caplog.at_level(logging.WARNING):
        _assert_same(model, batch, tol=0.0)
        model.loss(batch)
    assert sum("no C++ compiler" in r.message for r in caplog.records) == len(model.rule._cells)  # once per cell
    assert all(c.failed for c in model.rule._cells.values())


def test_compiled_helper_contract(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: calls.append(options) or fn)
    cell = Compiled(lambda x: x + 1, "test", dynamic=True)
    with fast_paths(False):
        assert cell(1) == 2 and cell._compiled is None  # plain: never compiles
    assert cell(1) == 2 and calls == [{"dynamic": True}]
    assert cell.__getstate__()["_compiled"] is None  # a copy or pickle compiles anew


@pytest.mark.slow
def test_compiled_cells_match_the_eager_cells():
    """Through torch.compile itself (inductor): meta-loss and every meta-gradient to 1e-5 in float32, for both
    learner kinds, then a batch of another task count without a failure."""
    torch._dynamo.reset()
    for learner in ("gru", "mlp"):
        model = _model(True, learner=learner)
        _assert_same(model, SinusoidSource(steps=3, shots=5, tasks=2, test_points=4).batch(0), tol=1e-5)
        _assert_same(model, SinusoidSource(steps=3, shots=5, tasks=3, test_points=4).batch(1), tol=1e-5)
        assert model.rule._cells and not any(c.failed for c in model.rule._cells.values())
