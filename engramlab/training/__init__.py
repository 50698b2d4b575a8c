"""The one meta-training loop: optimiser, clipping, schedule, checkpoints, resume, DDP.

It knows only the Memory protocol (``model.loss(batch)``) and the source protocol
(``source.batch(step, rank)``); nothing here is specific to a memory family.
"""

from engramlab.training.checkpoint import latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
from engramlab.training.config import Experiment, TrainConfig
from engramlab.training.loop import Trainer, TrainResult, build_optimizer, fit_best
from engramlab.training.runner import build_run, train

__all__ = [
    "Experiment",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_optimizer",
    "build_run",
    "fit_best",
    "latest_checkpoint",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "train",
]
