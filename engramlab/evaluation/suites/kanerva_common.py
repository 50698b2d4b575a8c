"""Shared pieces of the Kanerva benchmarks (kanerva-likelihood, kanerva-speed, kanerva-ablation).

Protocol (NOTES.md, Evaluation conventions; K++ App. E.1): an episode is T images of one split
drawn without replacement, no class structure (as in the K++/DKM code), from ``EpisodeSource``;
a memory is written from the episode and the episode's frames are scored by the model's ELBO, in
nats per image. Test episodes are fixed by a
seed, so every model sees the same ones; a model's weights are the ones with the best validation
loss (selection on validation, never on test). One sample per ELBO (no importance weighting).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import Tensor

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.swap import swap_gap
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
    # issue 13 diagnostics: a fresh Bernoulli sample of each grayscale image per training episode, one fixed sample for
    # validation and test (Burda et al.'s practice), so that the small shipped set overfits later
    "binarized-omniglot-dynamic": (
        "omniglot",
        {"image_size": 28, "binarize": "dynamic"},
        "bernoulli",
        "nats",
        "binarized Omniglot, 28×28, dynamically binarized, split by alphabet — not Burda's 24,345/8,070 split",
    ),
    # issue 13: episodes whose frames share structure (a deviation: the papers' episodes are i.i.d. draws)
    "binarized-omniglot-2chars": (
        "omniglot",
        {"image_size": 28, "binarize": "threshold", "class_structured": True, "classes_per_episode": 2},
        "bernoulli",
        "nats",
        "binarized Omniglot as above, each episode drawn from 2 characters (class-structured; the papers' "
        "episodes are i.i.d. draws)",
    ),
    "fashion-mnist": (
        "fashion_mnist",
        {},
        "dlml",
        "bits/dim",
        "Fashion-MNIST 8-bit, discretised logistic mixture, bits/dim = nats / (784 ln 2)",
    ),
}


def episode_sources(
    dataset: str, ctx: BenchContext, episode_length: int, batch_size: int, seed: int
) -> tuple[dict[str, EpisodeSource], str]:
    """Train/val/test ``EpisodeSource``s of a benchmark dataset (queries: salt-and-pepper p=0.15, used
    only by the denoising figure), and the loader's description of the splits."""
    name, options, *_ = DATASETS[dataset]
    config = DataConfig(dataset=name, data_dir=str(ctx.data_dir) if ctx.data_dir else None,
                        episode_length=episode_length, batch_size=batch_size, corruption="salt_pepper:p=0.15",
                        **options)  # fmt: skip
    sources = {s: EpisodeSource(config, s, seed) for s in ("train", "val", "test")}
    sizes = "/".join(str(len(sources[s].patternset)) for s in ("train", "val", "test"))
    return sources, f"{sources['train'].patternset.describe()} Sizes {sizes}."


def build(name: str, fields: dict[str, Any], shape: tuple[int, ...]) -> Memory:
    return build_memory(name, shape, **fields)


def train(
    model: Memory,
    train_src: EpisodeSource,
    val_src: EpisodeSource,
    ctx: BenchContext,
    steps: int,
    lr: float,
    max_seconds: float | None = None,
    eval_every: int | None = None,
) -> dict[str, Any]:
    """Train with the project's Trainer; keep the best-on-validation weights. Returns timing facts."""
    from engramlab.training import TrainConfig, fit_best

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
    start = time.perf_counter()
    result = fit_best(model, train_src, config, val_src, device=ctx.device, progress=ctx.progress, seed=ctx.seed)
    wall = time.perf_counter() - start
    model.eval()
    return {"steps": result.step, "train_seconds": wall, "best_val": result.best_val, "best_step": result.best_step}


@torch.no_grad()
def evaluate(
    model: Memory, test_src: EpisodeSource, batches: int, seed: int, device: torch.device
) -> dict[str, Tensor]:
    """Per-episode means over frames of every ELBO term, concatenated over ``batches`` test batches."""
    model.eval()
    out: dict[str, list[Tensor]] = {}
    for i in range(batches):
        torch.manual_seed(seed * 1_000_003 + i)
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


@torch.no_grad()
def key_usage(model: Any, test: Any, batches: int, device: torch.device) -> dict[str, float]:
    """How much the key posterior q(Y_t|X) (Eq. 6) says about each frame, on the test episodes.

    key_spread: std over test frames of the key means, averaged over the 3K raw key dims (0 when every
    frame gets the same keys); key_std: mean posterior std (1 = the prior p(Y) = N(0, I));
    kl_y_max_dim: the largest per-dim KL[q(Y)‖p(Y)] in nats. Spread ≪ std and KL ≈ 0 mean the keys are
    unused: every read lands at a random place, whichever the writer.
    """
    model.eval()
    x = torch.cat([test.batch(i).patterns for i in range(batches)]).to(device)
    _, mu, logvar = model._keys(model._embed(x), sample=False)
    mu, logvar = mu.flatten(-2).flatten(0, 1), logvar.flatten(-2).flatten(0, 1)  # (frames, 3K)
    kl_dim = 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).mean(0)
    return {"key_spread": float(mu.std(0).mean()), "key_std": float((0.5 * logvar).exp().mean()),
            "kl_y_max_dim": float(kl_dim.max())}  # fmt: skip


def score(
    model: Memory, test: EpisodeSource, batches: int, seed: int, device: torch.device
) -> tuple[dict[str, Tensor], dict[str, float], dict[str, float]]:
    """Everything the Kanerva suites report of a trained model on the fixed test batches 0..batches−1:
    the per-episode ELBO terms (``evaluate``), the key statistics (``key_usage``; empty for a model without keys)
    and the memory-swap gap (``engramlab.evaluation.swap``, nats per image, unscaled)."""
    terms = evaluate(model, test, batches, seed, device)
    keys = key_usage(model, test, batches, device) if hasattr(model, "_keys") else {}
    swap = swap_gap(model, (test.batch(i).patterns.to(device) for i in range(batches)), seed=seed)
    return terms, keys, swap
