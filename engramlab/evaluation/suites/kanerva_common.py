"""Shared pieces of the Kanerva benchmarks (kanerva-likelihood, kanerva-speed, kanerva-ablation).

Protocol (NOTES.md, Evaluation conventions; K++ App. E.1): an episode is T i.i.d. images of one
split (no class structure, as in the K++/DKM code); a memory is written from the episode and the
episode's frames are scored by the model's ELBO, in nats per image. Test episodes are fixed by a
seed, so every model sees the same ones; a model's weights are the ones with the best validation
loss (selection on validation, never on test). One sample per ELBO (no importance weighting).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import mean_ci
from engramlab.memories.base import Memory, build_memory

log = logging.getLogger(__name__)

# name -> (load_dataset name, load_dataset options, likelihood, unit, variant/split description)
DATASETS: dict[str, tuple[str, dict[str, Any], str, str, str]] = {
    "binarized-mnist": (
        "binarized_mnist",
        {},
        "bernoulli",
        "nats",
        "binarized MNIST, static binarization (Larochelle & Murray), splits 50k train / 10k valid / 10k test",
    ),
    "binarized-omniglot": (
        "omniglot",
        {"image_size": 28, "binarize": "threshold"},
        "bernoulli",
        "nats",
        "binarized Omniglot, 28×28, thresholded at 0.5, split by alphabet — not Burda's 24,345/8,070 split",
    ),
    "fashion-mnist": (
        "fashion_mnist",
        {},
        "dlml",
        "bits/dim",
        "Fashion-MNIST 8-bit, discretised logistic mixture, bits/dim = nats / (784 ln 2)",
    ),
}


def load_splits(dataset: str, ctx: BenchContext) -> tuple[dict[str, Tensor], str]:
    """(N, C, H, W) float32 images of the train/val/test splits, and the loader's description of them."""
    from engramlab.episodes.datasets import load_dataset

    name, options, *_ = DATASETS[dataset]
    sets = {s: load_dataset(name, split=s, data_dir=ctx.data_dir, **options) for s in ("train", "val", "test")}
    sizes = "/".join(str(len(sets[s])) for s in ("train", "val", "test"))
    return {s: ps.patterns.float() for s, ps in sets.items()}, f"{sets['train'].describe()} Sizes {sizes}."


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:7], "little")


@dataclass
class IIDEpisodes:
    """B episodes of T i.i.d. images drawn without replacement within an episode.

    ``batch(step, rank)`` is a pure function of (seed, split, step, rank), so every model trained or
    tested with the same source sees the same episodes.
    """

    patterns: Tensor
    episode_length: int
    batch_size: int
    seed: int
    split: str

    def batch(self, step: int, rank: int = 0) -> EpisodeBatch:
        gen = torch.Generator().manual_seed(_seed(self.seed, self.split, step, rank))
        n = self.patterns.shape[0]
        keys = torch.rand(self.batch_size, n, generator=gen)
        index = keys.topk(self.episode_length, dim=1).indices  # T distinct indices per episode
        return EpisodeBatch(patterns=self.patterns[index])


def build(name: str, fields: dict[str, Any], shape: tuple[int, ...]) -> Memory:
    return build_memory(name, shape, **fields)


def train(
    model: Memory,
    train_src: IIDEpisodes,
    val_src: IIDEpisodes,
    ctx: BenchContext,
    steps: int,
    lr: float,
    max_seconds: float | None = None,
    eval_every: int | None = None,
) -> dict[str, Any]:
    """Train with the project's Trainer; keep the best-on-validation weights. Returns timing facts."""
    from engramlab.training import TrainConfig, Trainer
    from engramlab.training.checkpoint import load_weights

    config = TrainConfig(
        steps=steps,
        optimizer="adam",
        lr=lr,
        clip_norm=10.0,
        eval_every=eval_every or max(steps // 4, 1),
        eval_batches=4,
        checkpoint_every=0,
        keep_last=1,
        log_every=max(steps // 10, 1),
        max_seconds=max_seconds,
    )
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train_src, config, out_dir=tmp, val_source=val_src, device=ctx.device,
                          progress=ctx.progress, seed=ctx.seed)  # fmt: skip
        start = time.perf_counter()
        result = trainer.fit()
        wall = time.perf_counter() - start
        if result.best_checkpoint is not None:
            load_weights(result.best_checkpoint, model, device=ctx.device)
    model.eval()
    return {"steps": result.step, "train_seconds": wall, "best_val": result.best_val, "best_step": result.best_step}


@torch.no_grad()
def evaluate(model: Memory, test_src: IIDEpisodes, batches: int, seed: int, device: torch.device) -> dict[str, Tensor]:
    """Per-episode means over frames of every ELBO term, concatenated over ``batches`` test batches."""
    model.eval()
    out: dict[str, list[Tensor]] = {}
    for i in range(batches):
        torch.manual_seed(_seed(seed, "eval", i))
        terms = model.elbo_terms(test_src.batch(i).patterns.to(device), sample=True)
        for k, v in terms.items():
            out.setdefault(k, []).append(v.mean(1).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def summarise(values: Tensor, scale: float = 1.0) -> tuple[float, float]:
    mean, ci = mean_ci(values * scale)
    return float(mean), float(ci)


def image_grid(path, rows: list[tuple[str, Tensor]], title: str = "") -> None:
    """Save rows of images (each (N, C, H, W) in [0, 1]) as one PNG with a label per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(r.shape[0] for _, r in rows)
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.0), squeeze=False)
    for i, (label, images) in enumerate(rows):
        for j in range(n):
            ax = axes[i][j]
            ax.axis("off")
            if j < images.shape[0]:
                img = images[j].detach().cpu().clamp(0, 1)
                ax.imshow(img[0] if img.shape[0] == 1 else img.permute(1, 2, 0), cmap="gray", vmin=0, vmax=1)
        axes[i][0].set_title(label, fontsize=7, loc="left")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def salt_and_pepper(x: Tensor, p: float, seed: int) -> Tensor:
    """Set a fraction p of the values to 0 or 1 at random (fixed seed)."""
    gen = torch.Generator().manual_seed(seed)
    hit = torch.rand(x.shape, generator=gen) < p
    value = (torch.rand(x.shape, generator=gen) < 0.5).to(x.dtype)
    return torch.where(hit.to(x.device), value.to(x.device), x)
