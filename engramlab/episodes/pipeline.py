"""DataConfig and EpisodeSource: the episode streams the training loop and benchmarks consume.

``EpisodeSource(config, split, seed).batch(step, rank)`` is a pure function of (seed, split, step,
rank): it seeds a fresh ``torch.Generator`` from them, so a resumed run sees exactly the episodes an
uninterrupted run would, and each DDP rank its own stream. ``fixed_batches(n)`` are the same n
evaluation batches for every model.

Example::

    cfg = DataConfig(dataset="digits", episode_length=16, batch_size=8, corruption="block:size=3,noise=zero")
    source = EpisodeSource(cfg, "train", seed=0)
    batch = source.batch(step=0)          # EpisodeBatch: patterns (8, 16, 1, 8, 8), queries, targets, mask
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.episodes.corruption import corrupt, parse_corruption
from engramlab.episodes.datasets import BINARIZE, DATASETS, SPLITS, PatternSet, load_dataset
from engramlab.episodes.sampler import EpisodeSampler
from engramlab.episodes.synthetic import binary_strings
from engramlab.errors import BadConfig

SOURCES = ("binary_strings", *DATASETS)


@dataclass(frozen=True)
class DataConfig:
    """Where episodes come from and what they look like (the ``[data]`` table of a preset).

    Attributes:
        dataset: "binary_strings" (synthetic ±1) or a ``load_dataset`` name ("digits", "omniglot", ...).
        image_size: resize images to image_size² (None: the dataset's native/default size).
        binarize: None, "static", "dynamic" or "threshold" (see ``load_dataset``).
        data_dir: data directory (None: ``ENGRAM_DATA`` / ../shared/data / user dir).
        folder: for dataset "image_folder", the folder of images (None: <data_dir>/celeba/img_align_celeba).
        episode_length: T, patterns written per episode.
        batch_size: B, episodes per batch.
        class_structured: draw classes then examples (needs labels).
        classes_per_episode: K in class-structured mode (None: min(T, #classes)).
        corruption: spec of how queries are made from stored patterns (``corruption.parse_corruption``),
            or None for no queries (generative training).
        queries_per_episode: N queries per episode, the corrupted versions of the first N stored
            patterns (None: N = T, every stored pattern).
        string_dim: d of binary strings.
        value_range: map patterns linearly from the dataset's range to (low, high), e.g. (-1, 1) for
            classical Hopfield on images; None keeps the dataset's range ([0, 1] images, ±1 strings).
    """

    dataset: str = "digits"
    image_size: int | None = None
    binarize: str | None = None
    data_dir: str | None = None
    folder: str | None = None
    episode_length: int = 16
    batch_size: int = 16
    class_structured: bool = False
    classes_per_episode: int | None = None
    corruption: str | None = "block:size=3,noise=zero"
    queries_per_episode: int | None = None
    string_dim: int = 128
    value_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.dataset not in SOURCES:
            raise BadConfig(f"unknown dataset '{self.dataset}'; known: {', '.join(SOURCES)}")
        if self.binarize not in BINARIZE:
            raise BadConfig(f"data.binarize must be one of {list(BINARIZE)}, got {self.binarize!r}")
        for name in ("episode_length", "batch_size", "string_dim"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BadConfig(f"data.{name} must be a positive integer, got {v!r}")
        for name in ("image_size", "classes_per_episode", "queries_per_episode"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise BadConfig(f"data.{name} must be a positive integer or none, got {v!r}")
        if self.queries_per_episode is not None and self.queries_per_episode > self.episode_length:
            raise BadConfig(
                f"data.queries_per_episode={self.queries_per_episode} exceeds episode_length={self.episode_length}"
            )
        if self.corruption is not None:
            parse_corruption(self.corruption)
        if self.value_range is not None:
            lo, hi = self.value_range
            if not lo < hi:
                raise BadConfig(f"data.value_range must have low < high, got {self.value_range}")
        if self.dataset == "binary_strings" and self.class_structured:
            raise BadConfig("binary_strings have no classes: class_structured must be false")


def _seed(*parts: object) -> int:
    """A 63-bit seed hashed from the parts (stable across processes and Python versions)."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class EpisodeSource:
    """Batches of episodes of one split, deterministic in (seed, split, step, rank).

    Each ``batch`` holds patterns (B, T, *shape), queries = corrupt(first N patterns) (B, N, *shape),
    targets = those clean patterns, mask = what was corrupted, and labels (B, T) when known.
    """

    def __init__(self, config: DataConfig, split: str = "train", seed: int = 0):
        if split not in SPLITS:
            raise BadConfig(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.config = config
        self.split = split
        self.seed = int(seed)
        self._patternset: PatternSet | None = None
        self._sampler: EpisodeSampler | None = None
        if config.dataset != "binary_strings":
            self._load()

    def _load(self) -> None:
        cfg = self.config
        options = {"path": cfg.folder} if cfg.dataset == "image_folder" and cfg.folder else {}
        self._patternset = load_dataset(
            cfg.dataset, self.split, data_dir=cfg.data_dir, image_size=cfg.image_size, binarize=cfg.binarize, **options
        )
        self._sampler = EpisodeSampler(
            self._patternset,
            cfg.episode_length,
            cfg.batch_size,
            class_structured=cfg.class_structured,
            classes_per_episode=cfg.classes_per_episode,
        )

    @property
    def patternset(self) -> PatternSet | None:
        """The loaded split (None for synthetic binary strings)."""
        return self._patternset

    @property
    def pattern_shape(self) -> tuple[int, ...]:
        if self._patternset is None:
            return (self.config.string_dim,)
        return self._patternset.pattern_shape

    @property
    def source_range(self) -> tuple[float, float]:
        return (-1.0, 1.0) if self._patternset is None else tuple(self._patternset.value_range)

    @property
    def value_range(self) -> tuple[float, float]:
        """(low, high) of the patterns this source yields."""
        vr = self.config.value_range
        return tuple(float(v) for v in vr) if vr is not None else self.source_range

    def describe(self) -> str:
        cfg = self.config
        what = f"binary strings d={cfg.string_dim}" if self._patternset is None else self._patternset.describe()
        return f"{what} | episodes B={cfg.batch_size} x T={cfg.episode_length}, corruption={cfg.corruption}"

    def generator(self, step: int, rank: int = 0) -> torch.Generator:
        """The fresh generator of (seed, split, step, rank)."""
        return torch.Generator().manual_seed(_seed("engramlab-episodes", self.seed, self.split, int(step), int(rank)))

    def batch(self, step: int, rank: int = 0) -> EpisodeBatch:
        """The batch of ``step`` for ``rank`` (CPU tensors; call ``.to(device)``)."""
        cfg = self.config
        gen = self.generator(step, rank)
        if self._patternset is None:
            patterns, labels = binary_strings(cfg.batch_size, cfg.episode_length, cfg.string_dim, gen), None
        else:
            patterns, labels = self._sampler.sample(gen)
        if cfg.value_range is not None:  # linear map from the source's range to the configured one
            lo, hi = self.source_range
            new_lo, new_hi = self.value_range
            patterns = new_lo + (patterns - lo) * ((new_hi - new_lo) / (hi - lo))
        patterns = patterns.contiguous()
        if cfg.corruption is None:
            return EpisodeBatch(patterns=patterns, labels=labels)
        n = cfg.queries_per_episode or cfg.episode_length
        targets = patterns[:, :n]
        queries, mask = corrupt(targets, cfg.corruption, gen, value_range=self.value_range)
        return EpisodeBatch(patterns=patterns, queries=queries, targets=targets.clone(), mask=mask, labels=labels)

    def fixed_batches(self, n: int) -> list[EpisodeBatch]:
        """The same ``n`` batches for every model and call: steps 0..n−1, rank 0, of this (seed, split)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise BadConfig(f"number of fixed batches must be a positive integer, got {n!r}")
        return [self.batch(i) for i in range(n)]
