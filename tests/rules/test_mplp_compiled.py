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


def test_every_weight_learner_call_goes_through_its_cell(monkeypatch):
    """With compile on, each weight learner runs through one ``Compiled`` cell (its ``cell_parts``, cut to
    ``out_dim`` outside the compiled function); the per-node learners (loss, activation, bias) stay eager.
    ``torch.compile`` itself records what it was given and returns it (the slow test below compiles)."""
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **options: compiled.append(fn) or fn)
    model = _model(True)
    batch = SinusoidSource(steps=2, shots=4, tasks=2, test_points=3).batch(0)
    _assert_same(model, batch, tol=0.0)  # the identity "compilation": exactly the eager cells
    cells = model.rule._cells
    assert len(cells) == 2 and all(isinstance(c, Compiled) and c._compiled is not None for c in cells.values())
    weight_learners = [model.rule._wl(i) for i in range(2)]
    assert sorted(cells) == sorted(id(w) for w in weight_learners)
    assert [fn.__func__ for fn in compiled] == [type(weight_learners[0]).cell_parts] * 2
    assert all(fn.__self__ in weight_learners for fn in compiled)
    assert _model(False).rule._cells == {}  # off by default: no cells


@pytest.mark.parametrize("learner", ["gru", "mlp"])
def test_a_cell_cut_by_its_head_is_the_learner(learner):
    """``head(cell_parts(...))`` is ``forward_parts`` and ``head(cell(...))`` is ``forward``; a GRU cell returns
    its whole carry (wider than the output), an MLP cell exactly its output."""
    torch.manual_seed(0)
    net = _model(False, learner=learner).rule._wl(0)
    parts = [torch.randn(2, 3, 1, 4, net.in_dim - 2), torch.randn(2, 1, 5, 4, 1), torch.randn(2, 3, 5, 1, 1)]
    state = net.init_state((2, 5, 4), parts[0])
    y, new_state = net.cell_parts(parts, state)
    assert y.shape[-1] == (net.state_dim if learner == "gru" else net.out_dim)
    out, head_state = net.head((y, new_state))
    ref_out, ref_state = net.forward_parts(parts, state)
    assert out.shape == (2, 3, 5, 4, net.out_dim) and torch.equal(out, ref_out)
    assert (head_state is None and ref_state is None) or torch.equal(head_state, ref_state)
    features = torch.cat([p.expand(2, 3, 5, 4, p.shape[-1]) for p in parts], -1)
    full_out, full_state = net(features, state)
    torch.testing.assert_close(full_out, out, rtol=1e-5, atol=1e-6)  # separable vs concatenated first layer
    if learner == "gru":
        torch.testing.assert_close(full_state, head_state, rtol=1e-5, atol=1e-6)


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
