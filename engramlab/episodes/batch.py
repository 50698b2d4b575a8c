"""EpisodeBatch: what one meta-training step sees (DESIGN.md, The Memory protocol)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor


@dataclass
class EpisodeBatch:
    """B episodes of T patterns, and the corrupted queries to read back.

    Attributes:
        patterns: (B, T, *pattern) the clean patterns written into memory.
        queries: (B, N, *pattern) corrupted versions to read from, or None for purely generative
            training.
        targets: (B, N, *pattern) what a read of each query should return (usually the clean
            pattern the query was made from).
        mask: (B, N, *pattern) bool, True where the query was corrupted; None when unknown.
        labels: (B, T) integer class labels of the patterns, when the source has classes.
    """

    patterns: Tensor
    queries: Tensor | None = None
    targets: Tensor | None = None
    mask: Tensor | None = None
    labels: Tensor | None = None

    @property
    def num_episodes(self) -> int:
        return self.patterns.shape[0]

    @property
    def episode_length(self) -> int:
        return self.patterns.shape[1]

    @property
    def pattern_shape(self) -> tuple[int, ...]:
        return tuple(self.patterns.shape[2:])

    def to(self, device: torch.device | str) -> EpisodeBatch:
        moved = {
            f.name: (getattr(self, f.name).to(device) if getattr(self, f.name) is not None else None)
            for f in fields(self)
        }
        return replace(self, **moved)
