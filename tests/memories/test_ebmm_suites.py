"""EBMM presets parse and build; the EBMM benchmark suites run end to end on tiny budgets."""

import json

import pytest

from engramlab.config import preset_names
from engramlab.evaluation.bench import run_suite
from engramlab.memories.base import build_memory
from engramlab.training.config import Experiment

NAMES = sorted(n for n in preset_names() if n.startswith("ebmm-"))


def test_ebmm_presets_exist():
    assert {"ebmm-strings", "ebmm-strings-quick", "ebmm-omniglot-conv", "ebmm-omniglot-fc"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_preset_builds_its_memory_with_paper_training_defaults(name):
    exp = Experiment.from_preset(name)
    shape = (
        (exp.data.string_dim,)
        if exp.data.dataset == "binary_strings"
        else (1, exp.data.image_size, exp.data.image_size)
    )
    memory = build_memory(exp.memory_name, shape, **exp.memory_fields)
    assert memory.memory_floats() > 0
    if not name.endswith("-quick"):  # a CPU-quick preset names its departures in its comment
        assert exp.train.optimizer == "adamw" and exp.train.weight_decay == 1e-6
        assert exp.train.lr == 5e-5 and exp.train.clip_norm == 0.05


TINY_EBMM = {"hidden_size": 80, "hops": 2, "write_steps": 1, "read_steps": 2, "write_lr": 0.1}


def test_strings_suite_writes_rows_for_every_model_and_the_speed(tmp_path, monkeypatch):
    from engramlab.evaluation.suites import ebmm_ladder as ladder
    from engramlab.evaluation.suites import ebmm_strings as suite

    tiny_ladder = {**ladder.QUICK, "T": [1, 2], "steps": 2, "batch_size": 2, "eval_every": 1, "val_batches": 1}
    monkeypatch.setattr(ladder, "QUICK", {**tiny_ladder, "ebmm": TINY_EBMM})
    monkeypatch.setattr(suite, "QUICK", {**suite.QUICK, "T": [2, 3], "test_batches": 1})
    run_suite("ebmm-strings", quick=True, out_root=tmp_path, progress=False)
    data = json.loads(next((tmp_path / "ebmm-strings").glob("*.json")).read_text())
    models = {r["model"] for r in data["rows"]}
    assert {"ebmm", "hebbian", "storkey", "pseudo-inverse", "modern", "query (no read)"} <= models
    ebmm = {r["T"]: r for r in data["rows"] if r["model"] == "ebmm"}
    assert ebmm[2]["trained_at_T"] == 2 and ebmm[3]["trained_at_T"] == 2  # T = 3 read with the last rung
    assert (tmp_path / "ebmm-ladder" / "quick-work" / "T2" / "log.csv").is_file()  # the ladder's own folder
    assert data["extra"]["speed"]["episodes"] == 16 and data["extra"]["speed"]["batched_speedup"] > 0


def test_ablations_suite_trains_every_variant_with_the_same_budget(tmp_path, monkeypatch):
    from engramlab.evaluation.suites import ebmm_ablations as suite

    tiny = {**suite.QUICK, "dim": 8, "steps": 1, "test_batches": 1, "ebmm": TINY_EBMM}
    monkeypatch.setattr(suite, "QUICK", tiny)
    run_suite("ebmm-ablations", quick=True, out_root=tmp_path, progress=False)
    data = json.loads(next((tmp_path / "ebmm-ablations").glob("*.json")).read_text())
    trained = [r for r in data["rows"] if r["variant"] != "query (no read)"]
    assert len(trained) == len(suite.VARIANTS) and {r["train_steps"] for r in trained} == {1}
    assert data["figures"] == ["quick-hamming-by-variant.png"]


@pytest.mark.slow
def test_omniglot_suite_runs_on_shipped_data(tmp_path, monkeypatch, shared_data):
    from engramlab.evaluation.suites import ebmm_omniglot as suite

    tiny = {
        **suite.QUICK,
        "curriculum": {8: 1},
        "test_batches": 1,
        "conv": {"dynamic_size": [2, 4], "channels": 4, "hidden_size": 8},
        "fc": {"dynamic_size": [4], "channels": 4, "hidden_size": 16},
        "ebmm": {"write_steps": 1, "read_steps": 1, "write_lr": 0.1},
    }
    monkeypatch.setattr(suite, "QUICK", tiny)
    run_suite("ebmm-omniglot", quick=True, out_root=tmp_path, progress=False)
    data = json.loads(next((tmp_path / "ebmm-omniglot").glob("*.json")).read_text())
    assert {"ebmm-conv", "ebmm-fc", "modern", "modern-hopfield-learned", "dkm"} <= {r["model"] for r in data["rows"]}
    assert "transfer_mnist" in data["extra"]
    (mean, ci), *rest = data["extra"]["conv_paired_differences"].values()
    assert list(data["extra"]["conv_paired_differences"]) == ["d2 - d4"] and not rest and ci > 0
    conv = {r["dynamic_size"]: r["sq_error"] for r in data["rows"] if r["model"] == "ebmm-conv"}
    assert mean == pytest.approx(conv[2] - conv[4], rel=1e-5)  # the same test episodes


def test_second_order_meta_step_saves_more_for_backward_than_first_order():
    from engramlab.evaluation.suites.ebmm_common import saved_tensor_mib
    from engramlab.evaluation.suites.ebmm_strings import source

    batch = source(4, 2, "val", 0).batch(0)
    sizes = [
        saved_tensor_mib(build_memory("ebmm-strings", (128,), **TINY_EBMM, first_order=fo), batch)
        for fo in (False, True)
    ]
    assert sizes[0] > sizes[1] > 0


@pytest.mark.slow
def test_omniglot_cpu_preset_checkpoints_and_resumes(tmp_path, monkeypatch, shared_data):
    from engramlab.evaluation.suites import ebmm_omniglot as suite

    tiny = {
        **suite.CPU,
        "curriculum": {1: 2, 2: 1, 8: 2},
        "test_batches": 1,
        "conv": {"dynamic_size": [2], "channels": 4, "hidden_size": 8},
        "fc": {"dynamic_size": [4], "channels": 4, "hidden_size": 16},
        "ebmm": {**suite.CPU["ebmm"], "write_steps": 1, "read_steps": 1},
    }
    monkeypatch.setattr(suite, "CPU", tiny)
    run_suite("ebmm-omniglot", preset="cpu", out_root=tmp_path, progress=False)
    work = tmp_path / "ebmm-omniglot" / "cpu-work"
    assert {p.name for p in work.iterdir()} == {"ebmm-conv-d2", "ebmm-fc-d4", "modern-hopfield-learned", "dkm"}
    assert {p.name for p in (work / "ebmm-conv-d2").iterdir()} == {"T1", "T2", "T8"}  # one checkpointed run per rung
    first = json.loads((tmp_path / "ebmm-omniglot" / "cpu.json").read_text())
    run_suite("ebmm-omniglot", preset="cpu", out_root=tmp_path, progress=False, resume=True)
    again = json.loads((tmp_path / "ebmm-omniglot" / "cpu.json").read_text())
    conv = [(r["sq_error"], r["train_steps"]) for r in first["rows"] if r["model"] == "ebmm-conv"]
    assert conv == [(r["sq_error"], r["train_steps"]) for r in again["rows"] if r["model"] == "ebmm-conv"]
    assert conv[0][1] == 5  # the rungs' meta-steps, summed
    rungs = first["extra"]["curriculum"]["ebmm-conv-d2"]
    assert [r["T"] for r in rungs] == [1, 2, 8] and all("swap_gap" in r for r in rungs)
    dkm = next(r for r in first["rows"] if r["model"] == "dkm")
    assert dkm["train_steps"] == 5  # the same number of updates as the EBMM's whole curriculum
