"""EpisodeSampler: B episodes of T distinct patterns from a PatternSet (DESIGN.md, episodes/).

Sampling is vectorised over episodes (random keys + ``topk``, no Python loop over episodes) and a
pure function of the ``torch.Generator`` it is given, so a seeded generator gives the same episodes.

Example::

    sampler = EpisodeSampler(load_dataset("digits"), episode_length=16, batch_size=8)
    patterns, labels = sampler.sample(torch.Generator().manual_seed(0))   # (8, 16, 1, 8, 8), (8, 16)
"""

from __future__ import annotations

import torch
from torch import Tensor

from engramlab.episodes.datasets import PatternSet
from engramlab.errors import BadConfig


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadConfig(f"{name} must be a positive integer, got {value!r}")
    return value


class EpisodeSampler:
    """Draws B episodes × T patterns without replacement within each episode.

    Args:
        patternset: the split to draw from.
        episode_length: T, the number of distinct patterns per episode (T ≤ N).
        batch_size: B, the number of episodes per sample.
        class_structured: when True, each episode first draws ``classes_per_episode`` distinct classes
            (uniformly among classes with enough examples), then ⌈T/K⌉ distinct examples of each, keeps
            T of them (the first T mod K classes contribute one more) and shuffles their order.
        classes_per_episode: K; default min(T, number of classes).

    ``sample`` returns patterns (B, T, *shape) and labels (B, T) (None when the set is unlabelled).
    When ``patternset.dynamic_binarize`` is set, patterns are a fresh Bernoulli sample per episode.
    """

    def __init__(
        self,
        patternset: PatternSet,
        episode_length: int,
        batch_size: int,
        class_structured: bool = False,
        classes_per_episode: int | None = None,
    ):
        self.patternset = patternset
        self.episode_length = _positive_int("episode_length", episode_length)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.class_structured = bool(class_structured)
        n = len(patternset)
        if n == 0:
            raise BadConfig(f"cannot sample episodes from an empty pattern set ({patternset.name}[{patternset.split}])")
        if self.episode_length > n:
            raise BadConfig(
                f"episode_length T={self.episode_length} exceeds the {n} patterns of "
                f"{patternset.name}[{patternset.split}] (episodes hold distinct patterns)"
            )
        self.classes_per_episode = None
        if self.class_structured:
            if patternset.labels is None:
                raise BadConfig(f"class_structured episodes need labels; {patternset.name} has none")
            labels = patternset.labels
            classes, counts = labels.unique(return_counts=True)
            k = min(self.episode_length, len(classes)) if classes_per_episode is None else classes_per_episode
            k = _positive_int("classes_per_episode", k)
            if k > self.episode_length:
                raise BadConfig(f"classes_per_episode={k} exceeds episode_length T={self.episode_length}")
            per_class = -(-self.episode_length // k)
            eligible = classes[counts >= per_class]
            if len(eligible) < k:
                raise BadConfig(
                    f"class_structured: need {k} classes with ≥{per_class} examples each, "
                    f"{patternset.name}[{patternset.split}] has {len(eligible)}"
                )
            self.classes_per_episode = k
            self._per_class = per_class
            # Padded table (C, max_count) of pattern indices per eligible class, and the counts.
            order = torch.argsort(labels, stable=True)
            sorted_labels = labels[order]
            max_count = int(counts.max())
            table = torch.full((len(eligible), max_count), -1, dtype=torch.long)
            for row, c in enumerate(eligible.tolist()):  # once per class at construction, not per episode
                members = order[sorted_labels == c]
                table[row, : len(members)] = members
            self._table = table
            self._counts = (table >= 0).sum(dim=1)

    def __len__(self) -> int:
        return len(self.patternset)

    def sample_indices(self, generator: torch.Generator) -> Tensor:
        """(B, T) long indices into the pattern set, distinct within each episode."""
        b, t = self.batch_size, self.episode_length
        if not self.class_structured:
            keys = torch.rand(b, len(self.patternset), generator=generator)
            return keys.topk(t, dim=1).indices  # a uniform random T-subset in random order
        k, m = self.classes_per_episode, self._per_class
        n_cls, width = self._table.shape
        cls = torch.rand(b, n_cls, generator=generator).topk(k, dim=1).indices  # (B, K) distinct classes
        keys = torch.rand(b, k, width, generator=generator)
        valid = torch.arange(width) < self._counts[cls].unsqueeze(-1)  # (B, K, width)
        keys = keys.masked_fill(~valid, -1.0)
        slots = keys.topk(m, dim=-1).indices  # (B, K, m) distinct members of each class
        idx = torch.gather(self._table[cls], 2, slots)  # (B, K, m)
        idx = idx.transpose(1, 2).reshape(b, k * m)[:, :t]  # round-robin over classes, keep T
        perm = torch.rand(b, t, generator=generator).argsort(dim=1)
        return torch.gather(idx, 1, perm)

    def sample(self, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """patterns (B, T, *shape) float32 and labels (B, T) long (None when unlabelled)."""
        idx = self.sample_indices(generator)
        patterns = self.patternset.patterns[idx]
        if self.patternset.dynamic_binarize:
            patterns = torch.bernoulli(patterns, generator=generator)
        labels = None if self.patternset.labels is None else self.patternset.labels[idx]
        return patterns, labels
