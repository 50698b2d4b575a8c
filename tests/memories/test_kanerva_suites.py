"""The Kanerva benchmark plumbing: fixed episodes, and the speed suite end to end on a tiny budget."""

import json

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation import bench
from engramlab.evaluation.suites import kanerva_ablation, kanerva_common, kanerva_speed
from engramlab.memories.base import build_memory

TINY_MODELS = {
    "kanerva++": {"encoder_width": 8, "latent": 8, "memory_size": 16, "window": 8, "writer_width": 16,
                  "dense_width": 16, "decoder_width": 8, "prior_width": 8},
    "dkm": {"encoder_width": 8, "code_size": 8, "memory_slots": 8, "decoder_width": 8},
}  # fmt: skip


@pytest.fixture(scope="module")
def speed_record(tmp_path_factory):
    """One tiny run of the speed suite (T=4 and one memory size; one profile per model)."""
    tiny = {**kanerva_speed.QUICK, "batch_size": 2, "lengths": [4], "base_length": 4, "kpp_sizes": [16],
            "dkm_slots": [8], "warmup": 1, "timed": 2, "models": TINY_MODELS}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kanerva_speed, "QUICK", tiny)
        out = tmp_path_factory.mktemp("speed")
        return json.loads(
            bench.run_suite("kanerva-speed", quick=True, out_root=out, progress=False)["json"].read_text()
        )


def test_speed_suite_writes_a_table_with_the_dkm_over_kpp_ratio(speed_record):
    assert {r["model"] for r in speed_record["rows"]} == {"kanerva++", "dkm"}
    assert all(r["dkm_over_kpp"] > 0 for r in speed_record["rows"] if r["model"] == "dkm")
    assert speed_record["figures"] == ["quick-step-ms-vs-T.png", "quick-step-ms-vs-memory.png"]


def test_speed_suite_profile_splits_each_model_into_encoder_write_read_decoder_shares(speed_record):
    profiles = speed_record["extra"]["profiles"]
    assert set(profiles) == {"kanerva++@T=4", "dkm@T=4"}
    for profile in profiles.values():
        shares = [profile[f"{part}_share"] for part in ("encoder", "write", "read", "decoder")]
        assert all(s > 0 for s in shares) and abs(sum(shares) - 1) < 1e-6
    assert any("Profile reading" in note for note in speed_record["notes"])


class _Batches:
    def __init__(self, x):
        self.x = x

    def batch(self, i):
        return EpisodeBatch(patterns=self.x)


def test_key_usage_is_zero_spread_and_zero_kl_when_the_key_net_ignores_the_frame(gen):
    model = build_memory("kanerva++", (1, 16, 16), **{**TINY_MODELS["kanerva++"], "window": 8})
    model.key_posterior = torch.nn.Linear(model.encoder.out_dim, 6 * model.config.reads)
    torch.nn.init.zeros_(model.key_posterior.weight)
    torch.nn.init.zeros_(model.key_posterior.bias)  # q(Y|X) = N(0, I) = p(Y) for every frame
    usage = kanerva_common.key_usage(model, _Batches(torch.rand(2, 3, 1, 16, 16, generator=gen)), 1, "cpu")
    assert usage["key_spread"] == 0.0 and abs(usage["key_std"] - 1) < 1e-6 and abs(usage["kl_y_max_dim"]) < 1e-6


def test_key_usage_sees_keys_that_differ_between_frames(gen):
    model = build_memory("kanerva++", (1, 16, 16), **{**TINY_MODELS["kanerva++"], "window": 8})
    usage = kanerva_common.key_usage(model, _Batches(torch.rand(2, 3, 1, 16, 16, generator=gen)), 1, "cpu")
    assert usage["key_spread"] > 0 and usage["kl_y_max_dim"] > 0


def _tiny_cpu_run(suite, name: str, tmp_path, monkeypatch) -> dict:
    """The suite's cpu preset on binarized MNIST only, 2 steps and 1 test batch; its JSON record."""
    tiny = {**suite.CPU, "steps": 2, "test_batches": 1, "datasets": ["binarized-mnist"]}
    monkeypatch.setattr(suite, "CPU", tiny)
    return json.loads(bench.run_suite(name, preset="cpu", out_root=tmp_path, progress=False)["json"].read_text())


@pytest.mark.slow
def test_likelihood_cpu_preset_runs_kpp_with_the_remedies_and_reports_key_std(tmp_path, monkeypatch, shared_data):
    from engramlab.evaluation.suites import kanerva_likelihood

    record = _tiny_cpu_run(kanerva_likelihood, "kanerva-likelihood", tmp_path, monkeypatch)
    rows = {r["model"]: r for r in record["rows"]}
    assert set(rows) == {"kanerva++", "dkm", "kpp-vae"} and {r["steps"] for r in rows.values()} == {2}
    assert 0 < rows["kanerva++"]["key_std"] and rows["dkm"]["key_std"] is None
    assert rows["kanerva++"]["minus_kpp"] is None and all(rows[m]["minus_kpp_ci"] >= 0 for m in ("dkm", "kpp-vae"))
    assert record["config"]["kanerva++"]["decoder_reads"] and any("remedies" in n for n in record["notes"])


@pytest.mark.slow
def test_ablation_cpu_preset_compares_the_writers_with_the_remedies_paired(tmp_path, monkeypatch, shared_data):
    record = _tiny_cpu_run(kanerva_ablation, "kanerva-ablation", tmp_path, monkeypatch)
    assert [r["writer"] for r in record["rows"]] == ["block", "dense"]
    assert record["config"]["kanerva++"]["decoder_reads"] and record["config"]["kanerva++"]["key_write"]
    assert any("paired over the same test episodes" in n for n in record["notes"])
    per_episode = record["extra"]["nll_per_episode"]  # kept, so that runs can be paired over seeds later
    assert set(per_episode) == {"binarized-mnist/seed0/block", "binarized-mnist/seed0/dense"}
    assert all(len(v) == len(per_episode["binarized-mnist/seed0/block"]) > 0 for v in per_episode.values())
