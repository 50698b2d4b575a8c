"""The ebmm-ladder suite runs end to end on a tiny budget, writes curves, diagnostics and a figure,
keeps the best-validation state of each rung, and resumes from its checkpoints."""

import json

import pytest

from engramlab.errors import BadConfig
from engramlab.evaluation.bench import run_suite

TINY = {
    "T": [1, 2],
    "steps": {1: 4, 2: 4},
    "batch_size": 2,
    "queries": 2,
    "eval_every": 2,
    "val_batches": 1,
    "test_batches": 1,
    "curriculum": True,
    "transfer_T": [3],
    "ebmm": {
        "hidden_size": 80,
        "hops": 2,
        "write_steps": 1,
        "read_steps": 2,
        "write_lr": 0.1,
        "write_reduction": "sum",
        "rate_lr_scale": 10.0,
    },
    "train": {"optimizer": "adam", "lr": 1e-3, "clip_norm": 1.0},
}


@pytest.fixture
def tiny_ladder(monkeypatch):
    from engramlab.evaluation.suites import ebmm_ladder as suite

    monkeypatch.setattr(suite, "QUICK", TINY)
    return suite


def test_ladder_writes_curves_baselines_diagnostics_and_figure_and_resumes(tmp_path, tiny_ladder):
    run_suite("ebmm-ladder", quick=True, out_root=tmp_path, progress=False)
    data = json.loads((tmp_path / "ebmm-ladder" / "quick.json").read_text())
    models = {(r["model"], r["T"]) for r in data["rows"]}
    for T in (1, 2):
        assert {("ebmm", T), ("hebbian", T), ("storkey", T), ("pseudo-inverse", T), ("query (no read)", T)} <= models
        curve = data["extra"]["curves"][str(T)]
        assert curve["curve_steps"] == [2, 4] and len(curve["curve_hamming"]) == 2
        assert {"stored_below_query", "drift_hamming", "write_specificity", "swap_hamming"} <= set(
            data["extra"]["diagnostics"][str(T)]
        )
    assert ("ebmm (trained at T=2)", 3) in models and ("pseudo-inverse", 3) in models
    assert data["preset"] == "quick" and data["figures"] == ["quick-hamming-vs-steps.png"]
    # --resume over finished rungs retrains nothing and reproduces the rows
    run_suite("ebmm-ladder", quick=True, out_root=tmp_path, progress=False, resume=True)
    again = json.loads((tmp_path / "ebmm-ladder" / "quick.json").read_text())
    ebmm = [(r["T"], r["hamming"], r["train_steps"]) for r in data["rows"] if r["model"] == "ebmm"]
    assert ebmm == [(r["T"], r["hamming"], r["train_steps"]) for r in again["rows"] if r["model"] == "ebmm"]


def test_ladder_has_no_unknown_preset(tmp_path, tiny_ladder):
    with pytest.raises(BadConfig, match="no 'nope' preset|unknown bench preset"):
        run_suite("ebmm-ladder", preset="nope", out_root=tmp_path, progress=False)


@pytest.mark.slow
def test_one_stored_string_is_recalled_within_minutes(tmp_path):
    """The ladder's base rung with the cpu settings: one 128-bit string, 10% flips, Hamming ≤ 0.01 on the
    fixed validation episodes within 1500 meta-steps (about 5 CPU-minutes), and its stored pattern is a
    fixed point of the read."""
    import torch

    from engramlab.evaluation.bench import BenchContext
    from engramlab.evaluation.suites.ebmm_ladder import CPU, source, train_rung
    from engramlab.memories.base import build_memory
    from engramlab.memories.ebmm.diagnostics import fixed_point_drift

    ctx = BenchContext("ebmm-ladder", False, 0, torch.device("cpu"), tmp_path, preset="cpu", progress=False)
    memory = build_memory("ebmm-strings", (128,), **CPU["ebmm"])
    train = train_rung(memory, 1, CPU, ctx)
    assert min(train["curve_hamming"]) <= 0.01
    assert fixed_point_drift(memory, source(1, 16, "test", 0, 16).batch(0))["drift_hamming"] <= 0.001
