"""MPLP benchmark suites run end to end on tiny budgets (slow: each evaluates 100 GRU-trained tasks)."""

import pytest
import torch

from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.suites import mplp_ablation, mplp_sinusoid


def _ctx(tmp_path, name):
    return BenchContext(name, True, 0, torch.device("cpu"), tmp_path, None, False)


@pytest.mark.slow
def test_sinusoid_suite_reports_every_model_after_every_step(tmp_path, monkeypatch):
    monkeypatch.setitem(mplp_sinusoid.QUICK, "gru_steps", 2)
    monkeypatch.setitem(mplp_sinusoid.QUICK, "mlp_steps", 2)
    monkeypatch.setitem(mplp_sinusoid.QUICK, "maml_steps", 2)
    result = mplp_sinusoid.mplp_sinusoid(_ctx(tmp_path, "mplp-sinusoid"))
    models = {(r["protocol"], r["model"].split(" (")[0]) for r in result.rows}
    assert models == {(p, m) for p in ("5x10", "2x10") for m in ("SGD", "Adam")} | {
        ("5x10", "MPLP"),
        ("2x10", "MPLP"),
        ("2x10", "MAML"),
    }
    assert all(r["tasks"] == 100 and r["loss@1_ci"] > 0 for r in result.rows)


@pytest.mark.slow
def test_ablation_suite_runs_each_variant_on_the_same_tasks(tmp_path, monkeypatch):
    monkeypatch.setitem(mplp_ablation.QUICK, "outer_steps", 1)
    monkeypatch.setattr(mplp_ablation, "VARIANTS", [("message", 1, "layer"), ("sharing", 4, "all")])
    result = mplp_ablation.mplp_ablation(_ctx(tmp_path, "mplp-ablation"))
    assert [r["model"] for r in result.rows] == ["msg 1, sharing layer", "msg 4, sharing all"]
    assert result.rows[0]["loss@0"] == pytest.approx(result.rows[1]["loss@0"])  # same tasks, same initial nets


def test_tuned_baselines_flag_a_best_learning_rate_on_the_grid_edge(monkeypatch):
    from engramlab.evaluation.suites import mplp_common
    from engramlab.rules.mplp.tasks import SinusoidSource

    monkeypatch.setattr(mplp_common, "SGD_GRID", [1e-6, 1e-5])  # both far too small: the largest must win
    monkeypatch.setattr(mplp_common, "ADAM_GRID", [1e-3])
    val, test = SinusoidSource(2, 5, 8, split="val"), SinusoidSource(2, 5, 8, split="test")
    out = mplp_common.tuned_baselines(val, test, (1, 8, 1), "relu", "mse", batches=1, val_batches=1)
    (sgd,) = [v for k, v in out.items() if k.startswith("SGD")]
    assert sgd[2] == 1e-5 and sgd[3]["at_edge"] == 1e-5


def test_mplp_ebmm_suite_compares_both_rules_and_the_query_on_the_same_episodes(tmp_path, monkeypatch):
    import json

    from engramlab.evaluation.bench import run_suite
    from engramlab.evaluation.suites import mplp_ebmm

    tiny = {"hidden_size": 80, "hops": 2, "write_steps": 1, "read_steps": 2}
    tiny = {**mplp_ebmm.QUICK["ebmm"], **tiny}  # the preset's own write options too
    monkeypatch.setattr(mplp_ebmm, "QUICK", {**mplp_ebmm.QUICK, "T": [4], "steps": 1, "test_batches": 1, "ebmm": tiny})
    run_suite("mplp-ebmm", quick=True, out_root=tmp_path, progress=False)
    data = json.loads(next((tmp_path / "mplp-ebmm").glob("*.json")).read_text())
    assert [r["write_rule"] for r in data["rows"]] == ["query (no read)", "gradient", "mplp"]
    assert data["rows"][1]["memory_floats"] == data["rows"][2]["memory_floats"]
    assert {r["train_steps"] for r in data["rows"][1:]} == {1}
    assert data["figures"] == ["quick-hamming-by-rule.png"]


@pytest.mark.slow
def test_mnist_cpu_preset_trains_the_residual_rule_and_resumes(tmp_path, monkeypatch):
    import json

    from engramlab.evaluation.bench import run_suite
    from engramlab.evaluation.suites import mplp_mnist

    tiny = {"outer_steps": 2, "monitor_every": 1, "monitor_tasks": 1, "curriculum": 2, "test_tasks": 2}
    tiny |= {"big_test_tasks": 1, "eval_tasks_per_batch": 2, "val_tasks": 2, "val_batches": 1}
    monkeypatch.setattr(mplp_mnist, "CPU", {**mplp_mnist.CPU, **tiny})
    monkeypatch.setattr(mplp_mnist, "SGD_GRID", [0.3, 1.0])
    monkeypatch.setattr(mplp_mnist, "ADAM_GRID", [0.01, 0.03])
    run_suite("mplp-mnist", preset="cpu", out_root=tmp_path, progress=False)
    data = json.loads((tmp_path / "mplp-mnist" / "cpu.json").read_text())
    models = {r["model"] for r in data["rows"]}
    assert {"MPLP residual (GRU 7, msg 4)", "SGD, meta-learned per-layer rates"} <= models
    assert any(m.startswith("Adam (val-best lr at each step)") for m in models)
    assert [r["step"] for r in data["extra"]["meta_curve"]] == [1, 2]
    assert "val_acc@20" in data["extra"]["meta_curve"][-1]
    assert (tmp_path / "mplp-mnist" / "cpu-work" / "mplp.pt").exists()
    monkeypatch.setattr(mplp_mnist, "CPU", {**mplp_mnist.CPU, "outer_steps": 3})
    run_suite("mplp-mnist", preset="cpu", out_root=tmp_path, progress=False, resume=True)
    data = json.loads((tmp_path / "mplp-mnist" / "cpu.json").read_text())
    assert [r["step"] for r in data["extra"]["meta_curve"]] == [1, 2, 3]  # continued, not restarted


@pytest.mark.slow
def test_ablation_cpu_preset_compares_message_sizes_over_seeds_and_resumes(tmp_path, monkeypatch):
    tiny = {**mplp_ablation.CPU, "outer_steps": 2, "seeds": 2, "monitor_every": 1}
    monkeypatch.setattr(mplp_ablation, "CPU", tiny)
    monkeypatch.setattr(mplp_ablation, "VARIANTS", [("message", 1, "layer"), ("message", 8, "layer")])

    def ctx(resume):
        return BenchContext("mplp-ablation", False, 0, torch.device("cpu"), tmp_path, None, False, "cpu", resume)

    first = mplp_ablation.mplp_ablation(ctx(False))
    assert [(r["seed"], r["model"].split(" (")[0]) for r in first.rows] == [
        (0, "msg 1, sharing layer, seed 0"),
        (1, "msg 1, sharing layer, seed 1"),
        ("all", "msg 1, sharing layer"),
        (0, "msg 8, sharing layer, seed 0"),
        (1, "msg 8, sharing layer, seed 1"),
        ("all", "msg 8, sharing layer"),
        ("all", "msg 8 − msg 1"),
    ]
    seeds = [r for r in first.rows if r["seed"] != "all"]
    assert seeds[0]["loss@1"] != seeds[1]["loss@1"]  # different seeds train different rules
    mean = first.rows[2]
    per_seed = [seeds[0]["loss@5"], seeds[1]["loss@5"]]
    assert mean["loss@5"] == pytest.approx(sum(per_seed) / 2) and mean["loss@5_ci"] > 0
    diff = first.rows[-1]
    assert diff["loss@5"] == pytest.approx(first.rows[5]["loss@5"] - mean["loss@5"], abs=1e-6)
    assert diff["better@5"] in {"0/2", "1/2", "2/2"}
    assert len(list((tmp_path / "cpu-work").glob("*.pt"))) == 4  # one checkpoint per variant and seed
    again = mplp_ablation.mplp_ablation(ctx(True))  # everything trained: --resume only evaluates
    assert [r["loss@5"] for r in again.rows] == pytest.approx([r["loss@5"] for r in first.rows])
