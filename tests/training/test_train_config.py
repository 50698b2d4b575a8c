"""TrainConfig (validation, learning-rate schedule) and Experiment (dicts, presets, overrides)."""

import math

import pytest

from engramlab.config import from_dict, to_dict
from engramlab.errors import BadConfig
from engramlab.training import Experiment, TrainConfig


def test_cosine_schedule_values():
    cfg = TrainConfig(steps=110, lr=2.0, warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert cfg.lr_at(0) == pytest.approx(0.2)  # linear warm-up: lr·(step+1)/warmup
    assert cfg.lr_at(4) == pytest.approx(1.0)
    assert cfg.lr_at(9) == pytest.approx(2.0)
    assert cfg.lr_at(10) == pytest.approx(2.0)  # cosine starts at the peak
    assert cfg.lr_at(60) == pytest.approx(0.2 + 1.8 * 0.5)  # half-way: the mean of peak and floor
    assert cfg.lr_at(35) == pytest.approx(0.2 + 1.8 * 0.5 * (1 + math.cos(math.pi * 0.25)))
    assert cfg.lr_at(110) == pytest.approx(0.2)  # the floor lr·min_lr_ratio at the end
    assert cfg.lr_at(500) == pytest.approx(0.2)


def test_constant_schedule_keeps_the_peak_after_warm_up():
    cfg = TrainConfig(steps=50, lr=1e-3, warmup_steps=4)
    assert [cfg.lr_at(s) for s in (0, 1, 3, 4, 49)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("lr", 0.0), ("accumulate", 0), ("clip_norm", -1.0), ("keep_last", 0), ("min_lr_ratio", 2.0)],
)
def test_out_of_range_values_raise_bad_config_naming_the_key(field, value):
    with pytest.raises(BadConfig, match=f"train.{field}"):
        from_dict(TrainConfig, {field: value})


def test_unknown_train_key_and_optimizer_raise_bad_config():
    with pytest.raises(BadConfig, match="'train.stepz'"):
        from_dict(TrainConfig, {"stepz": 3}, _path="train")
    with pytest.raises(BadConfig, match="optimizer"):
        from_dict(TrainConfig, {"optimizer": "sgd"}, _path="train")


def test_train_config_round_trips_through_plain_data():
    cfg = TrainConfig(steps=7, betas=(0.0, 0.9), clip_norm=None, schedule="cosine")
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def _experiment_dict():
    pytest.importorskip("engramlab.episodes.pipeline")
    return {"memory": {"name": "modern-hopfield", "beta": 4.0}, "data": {}, "train": {"steps": 3}, "seed": 2}


def test_experiment_round_trips_through_plain_data():
    exp = Experiment.from_dict(_experiment_dict())
    assert exp.memory_name == "modern-hopfield" and exp.memory_fields == {"beta": 4.0}
    assert exp.train.steps == 3 and exp.seed == 2
    assert Experiment.from_dict(exp.to_dict()) == exp


def test_experiment_from_a_toml_preset_with_overrides(tmp_path):
    _experiment_dict()
    preset = tmp_path / "tiny.toml"
    preset.write_text('seed = 1\n[memory]\nname = "modern-hopfield"\nbeta = 2.0\n[train]\nsteps = 10\nlr = 1e-3\n')
    exp = Experiment.from_preset(str(preset), ["train.steps=20", "memory.beta=8.0", "seed=3"])
    assert exp.train.steps == 20 and exp.train.lr == 1e-3 and exp.memory["beta"] == 8.0 and exp.seed == 3


def test_experiment_rejects_unknown_tables_and_a_missing_memory_name():
    data = _experiment_dict()
    with pytest.raises(BadConfig, match="'optim'"):
        Experiment.from_dict({**data, "optim": {}})
    with pytest.raises(BadConfig, match="name"):
        Experiment.from_dict({**data, "memory": {"beta": 1.0}})
    with pytest.raises(BadConfig, match="train.steps"):
        Experiment.from_dict({**data, "train": {"steps": -1}})
