"""train(experiment, out_dir): a registered memory on real episodes, checkpoints that rebuild it, resume."""

import csv

import pytest
import torch

from engramlab.training import Experiment, load_checkpoint, train

PRESET = {
    "seed": 3,
    "memory": {"name": "modern-hopfield-learned", "key_dim": 16},
    "data": {"dataset": "digits", "episode_length": 6, "batch_size": 4},
    "train": {"steps": 6, "lr": 3e-3, "eval_every": 3, "eval_batches": 2, "checkpoint_every": 3},
}


def experiment(**train_overrides):
    pytest.importorskip("engramlab.episodes.pipeline")
    return Experiment.from_dict({**PRESET, "train": {**PRESET["train"], **train_overrides}})


def losses(out_dir):
    with open(out_dir / "log.csv", newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def test_train_writes_checkpoints_that_rebuild_the_memory_and_experiment(tmp_path):
    exp = experiment()
    result = train(exp, tmp_path, device="cpu", progress=False)
    assert result.step == 6 and result.best_val is not None and not result.interrupted
    memory, stored, meta = load_checkpoint(tmp_path / "step-00000006")
    assert stored == exp and meta["memory"]["name"] == "modern-hopfield-learned"
    assert memory.registry_name == "modern-hopfield-learned" and tuple(memory.pattern_shape) == (1, 8, 8)
    best, _, best_meta = load_checkpoint(tmp_path)  # a run directory resolves to best/
    assert best_meta["step"] == result.best_step


def test_train_resumes_a_run_to_the_same_losses(tmp_path):
    train(experiment(), tmp_path / "full", device="cpu", progress=False)
    train(experiment(steps=3), tmp_path / "split", device="cpu", progress=False)
    result = train(experiment(), tmp_path / "split", device="cpu", progress=False, resume=True)
    assert result.step == 6
    assert losses(tmp_path / "split") == losses(tmp_path / "full")
    a, _, _ = load_checkpoint(tmp_path / "full" / "step-00000006")
    b, _, _ = load_checkpoint(tmp_path / "split" / "step-00000006")
    for p, q in zip(a.state_dict().values(), b.state_dict().values()):
        assert torch.equal(p, q)
