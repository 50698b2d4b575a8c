"""``train``: build a memory and its episode streams from an Experiment and meta-train it.

This is what ``engram train PRESET --set key=value --out DIR [--resume]`` calls.

Example::

    exp = Experiment.from_preset("hopfield-learned-digits", ["train.steps=200"])
    result = train(exp, "runs/hl")              # result.best_val, result.checkpoint
    result = train(exp, "runs/hl", resume=True) # continue exactly where a killed run stopped
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from engramlab.training.config import Experiment
from engramlab.training.loop import Trainer, TrainResult, step_seed


def build_run(experiment: Experiment, data_dir: str | Path | None = None):
    """The memory and the train/val ``EpisodeSource``s of ``experiment`` (memory on the CPU).

    The memory's initial weights are a function of ``experiment.seed`` (torch is seeded before it is built).
    """
    from engramlab.episodes.pipeline import EpisodeSource
    from engramlab.memories import build_memory

    data = experiment.data
    if data_dir is not None:
        data = dataclasses.replace(data, data_dir=str(data_dir))
    train_source = EpisodeSource(data, "train", experiment.seed)
    val_source = EpisodeSource(data, "val", experiment.seed)
    torch.manual_seed(step_seed(experiment.seed, 0, 0, tag=2))  # initial weights from the experiment seed
    memory = build_memory(experiment.memory_name, tuple(train_source.pattern_shape), **experiment.memory_fields)
    return memory, train_source, val_source


def train(
    experiment: Experiment,
    out_dir: str | Path | None,
    device: str | torch.device = "auto",
    resume: bool = False,
    progress: bool = True,
    data_dir: str | Path | None = None,
    hooks=None,
) -> TrainResult:
    """Meta-train the memory of ``experiment``, writing checkpoints and ``log.csv`` into ``out_dir``.

    Under ``torchrun`` each rank draws its own episode stream and rank 0 writes; see
    ``engramlab.training.distributed``. ``data_dir`` overrides ``experiment.data.data_dir``.
    """
    memory, train_source, val_source = build_run(experiment, data_dir)
    trainer = Trainer(
        memory,
        train_source,
        experiment.train,
        out_dir=out_dir,
        val_source=val_source,
        device=device,
        progress=progress,
        seed=experiment.seed,
        hooks=hooks,
        resume=resume,
        experiment=experiment,
    )
    return trainer.fit()
