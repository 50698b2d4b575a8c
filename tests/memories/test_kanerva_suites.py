"""The Kanerva benchmark plumbing: fixed episodes, and the speed suite end to end on a tiny budget."""

import json

import torch

from engramlab.evaluation import bench
from engramlab.evaluation.suites import kanerva_speed
from engramlab.evaluation.suites.kanerva_common import IIDEpisodes, salt_and_pepper


def test_iid_episodes_are_a_pure_function_of_seed_split_and_step(gen):
    patterns = torch.rand(50, 1, 8, 8, generator=gen)
    a = IIDEpisodes(patterns, 5, 3, seed=1, split="test")
    b = IIDEpisodes(patterns, 5, 3, seed=1, split="test")
    assert torch.equal(a.batch(4).patterns, b.batch(4).patterns)
    assert not torch.equal(a.batch(4).patterns, a.batch(5).patterns)
    flat = a.batch(0).patterns.flatten(2)
    for episode in flat:  # no image twice within an episode
        assert torch.unique(episode, dim=0).shape[0] == 5


def test_salt_and_pepper_touches_about_p_of_the_values():
    x = torch.full((1, 4, 1, 28, 28), 0.5)
    noisy = salt_and_pepper(x, 0.2, seed=0)
    assert abs((noisy != 0.5).float().mean().item() - 0.2) < 0.02
    assert set(noisy.unique().tolist()) == {0.0, 0.5, 1.0}


def test_speed_suite_writes_a_table_with_the_dkm_over_kpp_ratio(tmp_path, monkeypatch):
    tiny = {**kanerva_speed.QUICK, "batch_size": 2, "lengths": [4], "base_length": 4, "kpp_sizes": [16],
            "dkm_slots": [8], "warmup": 1, "timed": 2}  # fmt: skip
    tiny["models"] = {
        "kanerva++": {"encoder_width": 8, "latent": 8, "memory_size": 16, "window": 8, "writer_width": 16,
                      "dense_width": 16, "decoder_width": 8, "prior_width": 8},
        "dkm": {"encoder_width": 8, "code_size": 8, "memory_slots": 8, "decoder_width": 8},
    }  # fmt: skip
    monkeypatch.setattr(kanerva_speed, "QUICK", tiny)
    paths = bench.run_suite("kanerva-speed", quick=True, out_root=tmp_path, progress=False)
    record = json.loads(paths["json"].read_text())
    assert {r["model"] for r in record["rows"]} == {"kanerva++", "dkm"}
    assert all(r["dkm_over_kpp"] > 0 for r in record["rows"] if r["model"] == "dkm")
