"""The hopfield-learned-digits preset loads and a few updates of it lower the validation loss."""

import torch

from engramlab.training.config import Experiment
from engramlab.training.runner import build_run, train


def test_hopfield_learned_digits_preset_builds_the_learned_memory():
    exp = Experiment.from_preset("hopfield-learned-digits")
    memory, train_source, _ = build_run(exp)
    assert exp.memory_name == "modern-hopfield-learned"
    assert tuple(train_source.pattern_shape) == (1, 8, 8)
    assert memory.memory_floats(episode_length=exp.data.episode_length) == 16 * 64


def test_hopfield_learned_digits_preset_trains_below_its_initial_validation_loss(tmp_path):
    exp = Experiment.from_preset(
        "hopfield-learned-digits", ["train.steps=60", "train.eval_every=0", "train.warmup_steps=0", "data.batch_size=8"]
    )
    memory, _, val_source = build_run(exp)
    with torch.no_grad():
        before = sum(memory.loss(val_source.batch(i))[0].item() for i in range(4)) / 4
    result = train(exp, tmp_path / "run", device="cpu", progress=False)
    assert result.best_val is not None and result.best_val < 0.8 * before
