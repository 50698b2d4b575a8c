"""Task sources for MPLP (paper 004, Sec. 4): sinusoid regression and few-step MNIST classification.

Each source has ``.batch(step, rank=0) -> TaskBatch`` deterministic in (seed, split, step, rank).
"""

from __future__ import annotations

import zlib

import torch
import torch.nn.functional as F

from engramlab.episodes.synthetic import sinusoid_tasks
from engramlab.errors import BadConfig
from engramlab.rules.mplp.meta import TaskBatch

_SPLITS = {"train": 0, "val": 1, "test": 2}


def _seed(seed: int, split: str, step: int, rank: int) -> int:
    if split not in _SPLITS:
        raise BadConfig(f"split must be one of {list(_SPLITS)}, got {split!r}")
    return zlib.crc32(f"{seed}/{split}/{step}/{rank}".encode()) & 0x7FFFFFFF


class SinusoidSource:
    """Sinusoid tasks y = A sin(x + φ), A~U(0.1,0.5), φ~U(0,π), x~U(−5,5) (NOTES; Sec. 4.1).

    Args: steps T, shots S per step, tasks B per batch, test_points Q held-out per task.
    """

    def __init__(
        self,
        steps: int = 5,
        shots: int = 10,
        tasks: int = 4,
        test_points: int = 100,
        split: str = "train",
        seed: int = 0,
    ) -> None:
        self.steps, self.shots, self.tasks, self.test_points, self.split, self.seed = (
            steps,
            shots,
            tasks,
            test_points,
            split,
            seed,
        )
        _seed(seed, split, 0, 0)

    def batch(self, step: int, rank: int = 0) -> TaskBatch:
        s = _seed(self.seed, self.split, step, rank)
        gen = torch.Generator().manual_seed(s)
        n = self.steps * self.shots
        tasks = sinusoid_tasks(self.tasks, n + self.test_points, gen)
        x, y = tasks.x, tasks.y
        shape = (self.tasks, self.steps, self.shots, 1)
        return TaskBatch(x[:, :n].reshape(shape), y[:, :n].reshape(shape), x[:, n:], y[:, n:], seed=s)


class MNISTSource:
    """Few-step MNIST (Sec. 4.2): T steps × S random shots from all 10 classes; Q held-out test images.

    Images come from ``load_dataset("mnist", split)`` (with only MNIST's 10k test file shipped, the loader
    splits it by index: train [0, 8000), val [8000, 9000), test [9000, 10000)), or from ``patterns`` /
    ``labels`` given directly (used whole). They are resized with antialiasing to ``image_size`` (12 in
    the paper; 28 keeps the original) and flattened.
    """

    def __init__(
        self,
        steps: int = 20,
        shots: int = 8,
        tasks: int = 4,
        test_points: int = 200,
        image_size: int = 12,
        split: str = "train",
        seed: int = 0,
        data_dir=None,
        patterns: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.steps, self.shots, self.tasks, self.test_points, self.split, self.seed = (
            steps,
            shots,
            tasks,
            test_points,
            split,
            seed,
        )
        _seed(seed, split, 0, 0)
        if patterns is None:
            from engramlab.episodes.datasets import load_dataset

            data = load_dataset("mnist", split=split, data_dir=data_dir)
            patterns, labels = data.patterns, data.labels
        images = patterns.float()
        if images.dim() == 3:
            images = images.unsqueeze(1)
        if images.shape[-1] != image_size:
            images = F.interpolate(
                images, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
            )
        self.x = images.flatten(1)
        self.y = F.one_hot(labels.long(), 10).float()

    @property
    def input_size(self) -> int:
        return self.x.shape[1]

    def batch(self, step: int, rank: int = 0) -> TaskBatch:
        s = _seed(self.seed, self.split, step, rank)
        gen = torch.Generator().manual_seed(s)
        n = self.steps * self.shots
        idx = torch.randint(0, self.x.shape[0], (self.tasks, n + self.test_points), generator=gen)
        x, y = self.x[idx], self.y[idx]
        return TaskBatch(
            x[:, :n].reshape(self.tasks, self.steps, self.shots, -1),
            y[:, :n].reshape(self.tasks, self.steps, self.shots, 10),
            x[:, n:],
            y[:, n:],
            seed=s,
        )
