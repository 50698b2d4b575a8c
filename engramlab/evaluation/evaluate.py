"""Evaluate any memory through the protocol: retrieval metrics over fixed episodes, reads of
user images, samples from generative memories. Used by `engram eval`, `engram read`,
`engram generate` and the demo.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadInput, DataError
from engramlab.evaluation.metrics import hamming_error, mean_ci, retrieval_accuracy, squared_error
from engramlab.memories.base import Memory


@torch.no_grad()
def retrieval_metrics(memory: Memory, batch: EpisodeBatch) -> dict[str, Tensor]:
    """Per-episode (B,) retrieval metrics of reading ``batch.queries`` after writing ``batch.patterns``.

    Metrics: ``squared_error`` (always); ``hamming_error`` for memories of ±1 patterns;
    ``retrieval_accuracy`` when every query was made from the stored pattern of the same index.
    """
    if batch.queries is None or batch.targets is None:
        raise BadInput("retrieval metrics need a batch with queries and targets")
    with torch.enable_grad():  # gradient-based reads (EBMM) differentiate the energy
        state = memory.write(batch.patterns)
        read = memory.read(batch.queries, state).detach()
    out = {"squared_error": squared_error(read, batch.targets)}
    if tuple(memory.value_range) == (-1.0, 1.0):
        out["hamming_error"] = hamming_error(read, batch.targets)
    if batch.queries.shape[1] == batch.patterns.shape[1]:
        index = torch.arange(batch.patterns.shape[1], device=read.device).expand(read.shape[0], -1)
        out["retrieval_accuracy"] = retrieval_accuracy(read, batch.patterns, index)
    return out


def evaluate_memory(
    memory: Memory, batches: Iterable[EpisodeBatch], device: torch.device | str = "cpu", losses: bool = True
) -> dict:
    """Mean and 95% CI over all episodes of ``batches`` of the retrieval metrics and (``losses``) of the
    loss logs; ``losses=False`` also serves memories without a training loss (classical Hopfield)."""
    memory.eval()
    per_episode: dict[str, list[Tensor]] = {}
    logs: dict[str, list[float]] = {}
    for batch in batches:
        batch = batch.to(device)
        if batch.queries is not None:
            for key, value in retrieval_metrics(memory, batch).items():
                per_episode.setdefault(key, []).append(value.cpu())
        if not losses:
            continue
        with torch.enable_grad() if _needs_grad(memory) else torch.no_grad():
            _, batch_logs = memory.loss(batch)
        for key, value in batch_logs.items():
            logs.setdefault(f"loss/{key}", []).append(float(value))
    result: dict[str, float] = {}
    for key, values in per_episode.items():
        mean, ci = mean_ci(torch.cat(values))
        result[key], result[f"{key}_ci"] = float(mean), float(ci)
    for key, values in logs.items():
        arr = torch.tensor(values)
        mean, ci = mean_ci(arr) if len(values) > 1 else (arr.mean(), None)
        result[key] = float(mean)
        if ci is not None:
            result[f"{key}_ci"] = float(ci)
    return result


def _needs_grad(memory: Memory) -> bool:
    """Gradient-based writes and reads need autograd even at evaluation time."""
    return bool(getattr(memory, "needs_grad_at_eval", False))


def _load(checkpoint: Path, device):
    from engramlab.training import load_checkpoint

    return load_checkpoint(checkpoint, device=device)


def evaluate_checkpoint(
    checkpoint: Path,
    episodes: int = 64,
    split: str = "test",
    corruption: str | None = None,
    seed: int = 1234,
    device="cpu",
    data_dir: Path | None = None,
) -> dict:
    """Metrics of a checkpoint on ``episodes`` fixed episodes of its own dataset's ``split``."""
    from engramlab.episodes.pipeline import EpisodeSource

    memory, experiment, _ = _load(checkpoint, device)
    data = experiment.data
    if corruption is not None:
        data = replace(data, corruption=corruption)
    if data_dir is not None:
        data = replace(data, data_dir=str(data_dir))
    source = EpisodeSource(data, split, seed)
    n_batches = max(1, -(-episodes // data.batch_size))
    return evaluate_memory(memory, source.fixed_batches(n_batches), device)


def load_images(paths: list[Path], pattern_shape: tuple[int, ...]) -> Tensor:
    """Image files as a (1, T, C, H, W) episode in [0, 1], resized to the memory's pattern shape."""
    from PIL import Image, UnidentifiedImageError

    if len(pattern_shape) != 3:
        raise BadInput(f"this memory stores patterns of shape {pattern_shape}, not images")
    channels, height, width = pattern_shape
    mode = {1: "L", 3: "RGB"}.get(channels)
    if mode is None:
        raise BadInput(f"cannot load images for {channels} channels")
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert(mode).resize((width, height), Image.Resampling.LANCZOS)
                arrays.append(np.asarray(img, dtype=np.float32) / 255.0)
        except FileNotFoundError as e:
            raise DataError(f"image file not found: {path}") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot read image {path}: {e}") from e
    x = torch.from_numpy(np.stack(arrays))
    x = x.unsqueeze(1) if channels == 1 else x.permute(0, 3, 1, 2)
    return x.unsqueeze(0).contiguous()


def read_images(checkpoint: Path, images: list[Path], corruption: str, out: Path, seed: int = 0, device="cpu") -> Path:
    """Write the images as one episode, read corrupted copies back, save a stored|query|read grid."""
    from engramlab.episodes.corruption import corrupt
    from engramlab.viz import image_grid

    memory, experiment, _ = _load(checkpoint, device)
    episode = load_images(images, memory.pattern_shape).to(device)
    # images in [0, 1] mapped to the range the memory was trained on (unbounded memories: the data's)
    low, high = memory.value_range
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = experiment.data.value_range or (0.0, 1.0)
    episode = episode * (high - low) + low
    generator = torch.Generator().manual_seed(seed)
    query, _ = corrupt(episode.cpu(), corruption, generator)
    query = query.to(device)
    with torch.enable_grad():
        state = memory.write(episode)
        read = memory.read(query, state).detach()
    image_grid(episode.cpu(), query.cpu(), read.cpu(), out)
    return out


def generate_samples(
    checkpoint: Path, n: int, episodes: int, out: Path, seed: int = 0, device="cpu", data_dir: Path | None = None
) -> Path:
    """Write ``episodes`` test episodes, draw ``n`` samples from each, save them as a grid."""
    from engramlab.episodes.pipeline import EpisodeSource
    from engramlab.viz import sample_grid

    memory, experiment, _ = _load(checkpoint, device)
    if not memory.generative:
        raise BadInput(f"memory '{memory.registry_name}' is not generative: it cannot generate")
    data = experiment.data if data_dir is None else replace(experiment.data, data_dir=str(data_dir))
    batch = EpisodeSource(data, "test", seed).batch(0).to(device)
    torch.manual_seed(seed)
    with torch.no_grad():
        state = memory.write(batch.patterns[:episodes])
        samples = memory.generate(state, n)
    sample_grid(batch.patterns[:episodes].cpu(), samples.cpu(), out)
    return out
