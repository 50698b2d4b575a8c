"""The VBM benchmark suites run end to end on tiny budgets and write their tables and figures."""

import json

import pytest

import engramlab.evaluation.suites.vbm_images as vi
import engramlab.evaluation.suites.vbm_synthetic as vs
from engramlab.evaluation.bench import run_suite


def test_vbm_synthetic_vb_beats_both_dkm_writes_in_every_cell(tmp_path, monkeypatch):
    tiny = {**vs.QUICK, "rows": [4, 16], "code_sizes": [10, 40], "seeds": 2, "iters": 10,
            "speed_T": [8], "speed_K": [4], "speed_C": 8, "speed_repeats": 1}  # fmt: skip
    monkeypatch.setattr(vs, "QUICK", tiny)
    paths = run_suite("vbm-synthetic", quick=True, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    assert len(record["rows"]) == 4 and record["extra"]["speed"]
    assert all(r["ratio_online"] > 1 and r["ratio_batch_iter"] > 1 for r in record["rows"])
    assert (tmp_path / "vbm-synthetic" / "quick-ratio-heatmaps.png").exists()


@pytest.mark.slow
def test_vbm_images_runs_every_model_on_the_same_test_episodes(tmp_path, monkeypatch):
    tiny = {**vi.QUICK, "datasets": [("digits", None, "gaussian")], "models": vi.MODELS, "episodes": 2, "T": 8,
            "steps": 6, "eval_every": 1, "val_batches": 1, "test_batches": 1,
            "model": {"code": 8, "rows": 4, "width": 8}, "speed_T": [8], "speed_K": [4],
            "per_model": {"vbm-mixture": {"clusters": 2, "rows": 2, "iters": 2},
                          "vbm-tree": {"clusters": 2, "rows": 2, "groups": 2, "iters": 2}}}  # fmt: skip
    monkeypatch.setattr(vi, "QUICK", tiny)
    paths = run_suite("vbm-images", quick=True, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    assert [r["model"] for r in record["rows"]] == vi.MODELS
    assert record["rows"][0]["cifar10_paper"] == 3508.5
    figures = record["figures"]
    assert all(any(f.endswith(end) for f in figures) for end in ("samples.png", "val-curves.png", "resized-memory.png"))
    assert all(len(curve) == 6 for curve in record["extra"]["val_curves"]["digits"].values())
    assert record["rows"][0]["val_gain_last_third"] is not None
    cat = next(r for r in record["rows"] if r["model"] == "vbm-cat")
    assert cat["vs_vbm-cat_paired"] == 0.0 and all("vs_vbm-cat_paired" in r for r in record["rows"])
    vae = next(r for r in record["rows"] if r["model"] == "vbm-vae")
    assert vae["swap_gap"] == 0.0 and all("swap_gap" in r and "kl_omega_per_frame" in r for r in record["rows"])
    assert set(record["extra"]["write_speed_ms"][0]) >= {"vb_ms", "dkm_online_ms", "dkm_batch_iter_ms"}
    assert "| sweep | T | K |" in paths["markdown"].read_text()
    assert not (tmp_path / "vbm-images" / "quick-partial.json").exists()


def test_paper_ordering_check_accepts_ties_within_the_middle_and_last_pairs():
    assert vi._paper_ordering_holds(["vbm-cat", "vbm-gauss", "vbm-vae", "vbm-ns", "vbm-dkm"])
    assert vi._paper_ordering_holds(["vbm-cat", "vbm-mixture", "vbm-vae", "vbm-gauss", "vbm-dkm", "vbm-ns"])
    assert not vi._paper_ordering_holds(["vbm-gauss", "vbm-cat", "vbm-vae", "vbm-ns", "vbm-dkm"])
    assert not vi._paper_ordering_holds(["vbm-cat", "vbm-dkm", "vbm-vae", "vbm-gauss", "vbm-ns"])


def test_vbm_images_class_structured_entry_draws_episodes_of_k_classes(tmp_path, monkeypatch):
    """A 4th dataset entry K makes every episode hold K classes (train, val and test alike), labelled in the rows."""
    import torch

    from engramlab.evaluation.bench import BenchContext

    cfg = {**vi.QUICK, "episodes": 3, "T": 8}
    ctx = BenchContext("vbm-images", True, 0, torch.device("cpu"), tmp_path, progress=False)
    for split in ("train", "val", "test"):
        labels = vi._source(ctx, "digits", None, split, cfg, classes=2).batch(0).labels
        assert labels.shape == (3, 8) and all(len(row.unique()) == 2 for row in labels)
    iid = vi._source(ctx, "digits", None, "test", cfg).batch(0).labels
    assert max(len(row.unique()) for row in iid) > 2  # the paper's i.i.d. episodes
    tiny = {**vi.QUICK, "datasets": [("digits", None, "gaussian", 2)], "models": ["vbm-vae", "vbm-cat"],
            "episodes": 2, "T": 8, "steps": 2, "eval_every": 1, "val_batches": 1, "test_batches": 1,
            "model": {"code": 8, "rows": 4, "width": 8}, "speed_T": [8], "speed_K": [4]}  # fmt: skip
    monkeypatch.setattr(vi, "QUICK", tiny)
    record = json.loads(run_suite("vbm-images", quick=True, out_root=tmp_path, progress=False)["json"].read_text())
    assert {r["dataset"] for r in record["rows"]} == {"digits (dequantized), 2 classes per episode"}
    assert set(record["extra"]["test_elbo_per_episode"]) == {"digits-2class"}
