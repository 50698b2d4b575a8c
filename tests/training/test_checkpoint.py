"""Checkpoints: round trip, atomic writes, corruption detection, rebuilding a memory by name."""

import json

import pytest
import torch
from trainhelp import TEST_MEMORY, ToySource, make_memory

from engramlab.errors import CheckpointError
from engramlab.training import TrainConfig, Trainer, latest_checkpoint, load_checkpoint, save_checkpoint
from engramlab.training import checkpoint as ckpt
from engramlab.training.loop import build_optimizer


def trained(tmp_path, steps=3, **cfg):
    trainer = Trainer(
        make_memory(), ToySource(), TrainConfig(steps=steps, lr=1e-2, **cfg), tmp_path, device="cpu", progress=False
    )
    trainer.fit()
    return trainer


def test_checkpoint_round_trip_restores_weights_optimizer_and_step(tmp_path, registered_memory):
    trainer = trained(tmp_path)
    memory, experiment, meta = load_checkpoint(tmp_path / "step-00000003")
    assert isinstance(memory, registered_memory) and experiment is None
    assert meta["step"] == 3 and meta["memory"]["name"] == TEST_MEMORY and meta["pattern_shape"] == [6]
    for (name, p), q in zip(trainer.model.state_dict().items(), memory.state_dict().values()):
        assert torch.equal(p, q), name
    fresh = build_optimizer(make_memory(seed=1).parameters(), trainer.config)
    ckpt.load_optimizer(tmp_path / "step-00000003", fresh)
    saved, loaded = trainer.optimizer.state_dict(), fresh.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for index, state in saved["state"].items():
        for key, value in state.items():
            assert torch.equal(value, loaded["state"][index][key]), key


def test_checkpoint_holds_safetensors_optimizer_rng_and_meta(tmp_path):
    trained(tmp_path)
    names = sorted(p.name for p in (tmp_path / "step-00000003").iterdir())
    assert names == ["meta.json", "model.safetensors", "optimizer.pt", "rng.safetensors"]
    meta = json.loads((tmp_path / "step-00000003" / "meta.json").read_text())
    assert set(meta["files"]) == {"model.safetensors", "optimizer.pt", "rng.safetensors"}
    assert {"torch", "engramlab", "python"} <= set(meta["versions"])
    assert meta["train_config"]["steps"] == 3 and "loss" in meta["metrics"]


def test_failed_write_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    model = make_memory()
    save_checkpoint(tmp_path / "step-00000001", model, meta={"step": 1})

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    optimizer = build_optimizer(model.parameters(), TrainConfig())
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "step-00000002", model, optimizer, meta={"step": 2})
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "step-00000001", model, optimizer, meta={"step": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000001"]
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000001"
    assert json.loads((tmp_path / "step-00000001" / "meta.json").read_text())["step"] == 1


def test_latest_checkpoint_ignores_incomplete_directories(tmp_path):
    model = make_memory()
    save_checkpoint(tmp_path / "step-00000002", model, meta={"step": 2})
    (tmp_path / "step-00000009").mkdir()  # no meta.json: not a checkpoint
    (tmp_path / ".tmp-step-00000010-abcd").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000002"
    assert latest_checkpoint(tmp_path / "nowhere") is None


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.pt", "rng.safetensors"])
def test_corrupt_file_raises_checkpoint_error_naming_it(tmp_path, name, registered_memory):
    trained(tmp_path)
    path = tmp_path / "step-00000003"
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (path / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=name):
        if name == "model.safetensors":
            load_checkpoint(path)
        elif name == "optimizer.pt":
            ckpt.load_optimizer(path, build_optimizer(make_memory().parameters(), TrainConfig()))
        else:
            ckpt.load_rng(path)


def test_truncated_weights_raise_checkpoint_error_even_without_hashes(tmp_path, registered_memory):
    trained(tmp_path)
    path = tmp_path / "step-00000003"
    meta = json.loads((path / "meta.json").read_text())
    del meta["files"]
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:40])
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(path)


def test_missing_file_and_bad_meta_raise_checkpoint_error(tmp_path, registered_memory):
    trained(tmp_path)
    path = tmp_path / "step-00000003"
    (path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing.*model.safetensors"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="meta.json"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent")


def test_weights_of_another_shape_raise_checkpoint_error(tmp_path, registered_memory):
    trained(tmp_path)
    with pytest.raises(CheckpointError, match="does not match the model"):
        ckpt.load_weights(tmp_path / "step-00000003", make_memory(shape=(5,)))


def test_a_run_directory_resolves_to_best_then_latest(tmp_path):
    trained(tmp_path, checkpoint_every=1)
    assert ckpt.resolve_checkpoint(tmp_path) == tmp_path / "step-00000003"
    save_checkpoint(tmp_path / "best", make_memory(), meta={"step": 2})
    assert ckpt.resolve_checkpoint(tmp_path) == tmp_path / "best"


def test_checkpoint_of_an_unregistered_model_cannot_be_rebuilt(tmp_path):
    save_checkpoint(tmp_path / "step-00000001", torch.nn.Linear(2, 2), meta={"step": 1})
    with pytest.raises(CheckpointError, match="load_weights"):
        load_checkpoint(tmp_path)


def test_optimizer_state_is_read_without_unpickling_code(tmp_path):
    trained(tmp_path)
    state = torch.load(tmp_path / "step-00000003" / "optimizer.pt", weights_only=True)
    assert set(state) == {"state", "param_groups"}
