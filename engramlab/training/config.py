"""Training and experiment configs: what the one meta-training loop needs, as frozen dataclasses.

``TrainConfig`` holds the optimiser, schedule, clipping, accumulation, evaluation and checkpoint
settings. ``Experiment`` bundles a memory (its registered name and config fields), a data config
(``engramlab.episodes.pipeline.DataConfig``), a ``TrainConfig`` and a seed; it is what a TOML preset
in ``engramlab/configs`` describes and what a checkpoint stores in ``meta.json``.

Example::

    exp = Experiment.from_preset("hopfield-learned-digits", ["train.steps=200", "memory.beta=4.0"])
    exp.train.lr, exp.memory["name"]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from engramlab.config import apply_overrides, from_dict, load_preset, to_dict
from engramlab.errors import BadConfig


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the meta-training loop (``engramlab.training.Trainer``).

    Attributes:
        steps: number of optimiser updates in the whole run.
        optimizer: "adamw" | "adam" | "rmsprop".
        lr: peak learning rate.
        betas, eps: Adam(W) moment coefficients and epsilon (eps is also RMSprop's).
        weight_decay: decoupled for AdamW, L2 for Adam and RMSprop.
        momentum, alpha: RMSprop momentum and smoothing constant.
        clip_norm: clip the global gradient norm to this value; None turns clipping off.
        warmup_steps: linear warm-up from lr/warmup_steps to lr over this many updates.
        schedule: "constant" or "cosine" (cosine decay from lr to lr·min_lr_ratio after warm-up).
        min_lr_ratio: the floor of the cosine schedule as a fraction of lr.
        accumulate: micro-batches whose gradients are averaged into one update.
        eval_every: evaluate on the validation source every this many updates (0 = only at the end).
        eval_batches: validation batches ``val_source.batch(i)``, i < eval_batches (the same each time).
        checkpoint_every: save a checkpoint every this many updates (0 = only at the end).
        keep_last: how many ``step-*`` checkpoints to keep (``best/`` is kept besides them).
        log_every: write a CSV row (and TensorBoard scalars) every this many updates.
        zero_nonfinite_grads: replace NaN/Inf gradient entries with 0 before clipping (the VBM
            paper's code does this); otherwise a non-finite gradient raises NumericalError.
        detect_anomaly: run under ``torch.autograd.detect_anomaly`` (slow; for debugging).
        max_seconds: stop early (saving a checkpoint) after this much wall time; None = no limit.
            A time budget makes the number of updates machine-dependent.
        find_unused_parameters: passed to DistributedDataParallel (memories whose loss does not use
            every parameter on every step need it).
        tensorboard: also write TensorBoard scalars when the ``tensorboard`` package is installed.
    """

    steps: int = 1000
    optimizer: Literal["adamw", "adam", "rmsprop"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    alpha: float = 0.99
    clip_norm: float | None = 1.0
    warmup_steps: int = 0
    schedule: Literal["constant", "cosine"] = "constant"
    min_lr_ratio: float = 0.0
    accumulate: int = 1
    eval_every: int = 0
    eval_batches: int = 4
    checkpoint_every: int = 0
    keep_last: int = 3
    log_every: int = 1
    zero_nonfinite_grads: bool = False
    detect_anomaly: bool = False
    max_seconds: float | None = None
    find_unused_parameters: bool = False
    tensorboard: bool = True

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise BadConfig(f"train.{message}")

        need(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        need(math.isfinite(self.lr) and self.lr > 0, f"lr must be a positive number, got {self.lr}")
        need(all(0.0 <= b < 1.0 for b in self.betas), f"betas must lie in [0, 1), got {self.betas}")
        need(self.eps > 0, f"eps must be positive, got {self.eps}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}")
        need(0.0 <= self.alpha < 1.0, f"alpha must lie in [0, 1), got {self.alpha}")
        need(self.clip_norm is None or self.clip_norm > 0, f"clip_norm must be positive or none, got {self.clip_norm}")
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        need(0.0 <= self.min_lr_ratio <= 1.0, f"min_lr_ratio must lie in [0, 1], got {self.min_lr_ratio}")
        need(self.accumulate >= 1, f"accumulate must be >= 1, got {self.accumulate}")
        need(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        need(self.eval_batches >= 0, f"eval_batches must be >= 0, got {self.eval_batches}")
        need(self.checkpoint_every >= 0, f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        need(self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        need(self.max_seconds is None or self.max_seconds > 0, f"max_seconds must be positive, got {self.max_seconds}")

    def lr_at(self, step: int) -> float:
        """Learning rate of update ``step`` (0-based): linear warm-up, then constant or cosine decay."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.lr * self.min_lr_ratio
        return floor + (self.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class Experiment:
    """A memory, its data, its training settings and a seed: one preset, one run.

    Attributes:
        memory: ``{"name": registered memory name, **config fields}``.
        data: an ``engramlab.episodes.pipeline.DataConfig``.
        train: a ``TrainConfig``.
        seed: seeds the episode streams and the model's randomness.
    """

    memory: dict[str, Any]
    data: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.memory, dict) or not isinstance(self.memory.get("name"), str):
            raise BadConfig(f"experiment [memory] needs a 'name' (a registered memory), got {self.memory!r}")

    @property
    def memory_name(self) -> str:
        return self.memory["name"]

    @property
    def memory_fields(self) -> dict[str, Any]:
        """The memory's config fields (everything in [memory] but its name)."""
        return {k: v for k, v in self.memory.items() if k != "name"}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Experiment:
        """Build from plain data with tables ``memory``, ``data``, ``train`` and a top-level ``seed``."""
        from engramlab.episodes.pipeline import DataConfig

        if not isinstance(data, dict):
            raise BadConfig(f"an experiment must be a table, got {data!r}")
        unknown = sorted(set(data) - {"memory", "data", "train", "seed"})
        if unknown:
            raise BadConfig(f"unknown config key '{unknown[0]}' in experiment; known keys: data, memory, seed, train")
        if "memory" not in data:
            raise BadConfig("experiment has no [memory] table")
        seed = data.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise BadConfig(f"config key 'seed' must be an integer, got {seed!r}")
        return cls(
            memory=dict(data["memory"]) if isinstance(data["memory"], dict) else data["memory"],
            data=from_dict(DataConfig, data.get("data", {}), _path="data"),
            train=from_dict(TrainConfig, data.get("train", {}), _path="train"),
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-able data that ``from_dict`` turns back into an equal Experiment."""
        return {
            "memory": dict(self.memory),
            "data": to_dict(self.data),
            "train": to_dict(self.train),
            "seed": self.seed,
        }

    @classmethod
    def from_preset(cls, name_or_path: str, overrides: list[str] | None = None) -> Experiment:
        """A named preset (``engramlab/configs/NAME.toml``) or a TOML path, with ``key=value`` overrides."""
        raw = load_preset(name_or_path)
        return cls.from_dict(apply_overrides(raw, list(overrides or [])))
