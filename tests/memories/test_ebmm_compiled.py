"""EBMM's compiled training step (memories/ebmm/compiled.py, issue 15): the same loss and meta-gradients as the
plain step; where it does not apply, and when compilation fails, the plain step runs."""

import logging

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadInput
from engramlab.memories.base import build_memory
from engramlab.memories.ebmm import compiled
from engramlab.nn.fast import fast_paths

TINY = dict(hidden_size=16, hops=2, write_steps=2, read_steps=2, write_rule_options={"lr_init": [0.5, 0.4, 0.2]})


def _batch(seed: int = 0, b: int = 3, t: int = 4, d: int = 16) -> EpisodeBatch:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 2, (b, t, d), generator=gen).float() * 2 - 1
    flips = torch.where(torch.rand(b, 2, d, generator=gen) < 0.2, -1.0, 1.0)
    return EpisodeBatch(patterns=x, queries=x[:, :2] * flips, targets=x[:, :2].clone())


def _loss_and_grads(mem, batch, fast: bool):
    mem.zero_grad(set_to_none=True)
    with fast_paths(fast):
        loss, logs = mem.loss(batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in mem.named_parameters() if p.grad is not None}
    return loss.detach(), {k: float(v) for k, v in logs.items()}, grads


def _assert_same(mem, batch, tol=1e-5):
    mem.train()
    plain_loss, plain_logs, plain_grads = _loss_and_grads(mem, batch, False)
    loss, logs, grads = _loss_and_grads(mem, batch, True)
    assert torch.allclose(loss, plain_loss, rtol=tol, atol=0)
    assert logs == pytest.approx(plain_logs, rel=tol, abs=1e-7)
    assert sorted(grads) == sorted(plain_grads)  # every parameter gets its meta-gradient, the same ones
    for name, g in plain_grads.items():
        scale = g.abs().max().clamp_min(1e-12)
        assert float((grads[name] - g).abs().max() / scale) < tol, name


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"write_reduction": "sum", "loss_steps": "final", "alpha": 0.2, "beta": 0.05},
        {"write_rule": "maml", "write_rule_options": {"lr": 0.3}},
    ],
    ids=["gradient-mean", "gradient-sum-final", "maml"],
)
def test_functional_meta_loss_is_the_plain_loss(monkeypatch, fields):
    """The torch.func form that is compiled, run eagerly (torch.compile replaced by the identity): the plain
    loss, logs and every meta-gradient, in float64 to 1e-10."""
    monkeypatch.setattr(compiled.compiled_meta_loss, "_compiled", compiled.meta_loss)
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", (16,), **{**TINY, **fields, "compile": True}).double()
    batch = _batch()
    batch = EpisodeBatch(
        patterns=batch.patterns.double(), queries=batch.queries.double(), targets=batch.targets.double()
    )
    _assert_same(mem, batch, tol=1e-10)


def test_functional_meta_loss_with_two_writable_layers(monkeypatch):
    """ebmm-conv writes two layers (block3.memory, block4.memory) with their own rates: per-layer steps."""
    monkeypatch.setattr(compiled.compiled_meta_loss, "_compiled", compiled.meta_loss)
    torch.manual_seed(0)
    fields = dict(channels=4, hidden_size=8, dynamic_size=2, write_steps=1, read_steps=2, write_lr=0.1, compile=True)
    mem = build_memory("ebmm-conv", (1, 16, 16), **fields).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 1, 16, 16, generator=gen, dtype=torch.float64)
    with torch.no_grad():  # distinct rates per layer and term, so a mix-up of layers would show
        mem.rule.raw_lr.copy_(torch.tensor([[-2.0, -3.0, -4.0], [-2.5, -3.5, -1.5]]))
    _assert_same(mem, EpisodeBatch(patterns=x, queries=x.clip(0.1, 0.9), targets=x.clone()), tol=1e-10)


def test_unsupported_settings_train_on_the_plain_path(caplog):
    mem = build_memory("ebmm-strings", (16,), **{**TINY, "compile": True, "first_order": True})
    assert "first_order" in compiled.supported(mem)
    mem.train()
    with caplog.at_level(logging.WARNING):
        loss, _ = mem.loss(_batch())
        mem.loss(_batch())
    assert torch.isfinite(loss)
    assert sum("plain path" in r.message for r in caplog.records) == 1  # warned once


def test_a_failed_compilation_falls_back_to_the_plain_step(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(compiled.compiled_meta_loss, "_compiled", broken)
    monkeypatch.setattr(compiled.compiled_meta_loss, "failed", False)
    mem = build_memory("ebmm-strings", (16,), **{**TINY, "compile": True})
    mem.train()
    with caplog.at_level(logging.WARNING):
        loss, logs = mem.loss(_batch())
    assert compiled.compiled_meta_loss.failed and "no C++ compiler" in caplog.text
    with fast_paths(False):
        plain, _ = mem.loss(_batch())
    assert torch.equal(loss, plain)


def test_compiled_step_checks_its_input_before_the_graph(monkeypatch):
    monkeypatch.setattr(compiled.compiled_meta_loss, "_compiled", compiled.meta_loss)
    mem = build_memory("ebmm-strings", (16,), **{**TINY, "compile": True})
    mem.train()
    bad = _batch()
    bad.queries[0, 0, 0] = float("nan")
    with pytest.raises(BadInput, match="query contains NaN"):
        mem.loss(bad)


@pytest.mark.slow
def test_compiled_step_matches_the_plain_step_and_is_reused_across_shapes():
    """Through torch.compile itself (inductor, dynamic shapes): loss and meta-gradients to 1e-5 in float32, then a
    batch of another episode count and length, and another memory of the same settings, without a second
    compilation."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", (16,), **{**TINY, "compile": True})
    _assert_same(mem, _batch(b=4, t=12))
    assert not compiled.compiled_meta_loss.failed
    counters = torch._dynamo.utils.counters
    frames = counters["stats"]["unique_graphs"]
    _assert_same(mem, _batch(seed=1, b=5, t=10))  # B·T > 32: a threshold inductor guards on with tiny episodes
    assert counters["stats"]["unique_graphs"] == frames
    torch.manual_seed(1)  # another memory of the same settings: the same compilation, its own weights
    _assert_same(build_memory("ebmm-strings", (16,), **{**TINY, "compile": True}), _batch(b=4, t=12))
    assert counters["stats"]["unique_graphs"] == frames
