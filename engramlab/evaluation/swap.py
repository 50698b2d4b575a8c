"""The memory-swap test (issue 13): does a generative memory use what was written into it?

Every frame of an episode is scored twice by the model's ELBO, in nats per frame: once with the memory
written from the frame's own episode, once with the memory written from another episode of the same batch
(episode b gets the memory of episode b − shift, i.e. ``episodes.roll(shift, 0)``). The frames, the
posterior over each frame's own latents and every random draw are the same in both passes (the RNG is
reseeded before each), so the difference

    swap_gap = ELBO(frame | own memory) − ELBO(frame | swapped memory)

is exactly 0 for a model that ignores its memory, and > 0 when the written episode helps explain its own
frames. Both ELBOs keep every term of the model's bound (KL(q(M) ‖ p(M))/T included for models with a
stochastic memory), so the gap is in the same units as the model's ELBO per frame.

A model takes part through ``elbo_terms(episode, ..., write_from=other)``: Kanerva++, its dense ablation,
the DKM, the K++ VAE (which ignores ``write_from``), every VBM variant, vbm-dkm, vbm-ns and vbm-vae.
VBM models score the frames with the optimal q(y_t) given the written q(Ω) in *both* passes
(``VBMemory.readdress``), so the own-memory ELBO here differs slightly from the training ELBO.

Example::

    out = swap_test(model, batch.patterns)          # per-episode tensors (B,)
    mean, ci = mean_ci(out["swap_gap"])             # nats/frame, 95% CI over episodes
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from engramlab.errors import BadInput
from engramlab.evaluation.metrics import mean_ci

__all__ = ["frame_elbo", "swap_test", "swap_gap"]


def frame_elbo(model: torch.nn.Module, episodes: Tensor, write_from: Tensor | None = None, **options: Any) -> Tensor:
    """ELBO per frame, averaged over the frames of each episode, (B,) nats, with the memory written from
    ``write_from`` (default: the episodes themselves). Reads ``elbo_per_frame`` (VBM family, (B,)) or
    ``nll`` (Kanerva family, (B, T) negative ELBO per frame) from the model's ``elbo_terms``."""
    if not hasattr(model, "elbo_terms"):
        raise BadInput(f"{type(model).__name__} has no elbo_terms: the swap test needs a generative memory")
    terms = model.elbo_terms(episodes, write_from=write_from, **options)
    if "elbo_per_frame" in terms:
        return terms["elbo_per_frame"]
    if "nll" in terms:
        nll = terms["nll"]
        return -(nll.mean(1) if nll.dim() > 1 else nll)
    raise BadInput(f"{type(model).__name__}.elbo_terms returns neither 'elbo_per_frame' nor 'nll'")


@torch.no_grad()
def swap_test(
    model: torch.nn.Module, episodes: Tensor, shift: int = 1, seed: int = 0, **options: Any
) -> dict[str, Tensor]:
    """Per-episode ELBO/frame with the own memory and with a swapped one, and their difference.

    Args:
        model: a generative memory with ``elbo_terms(x, ..., write_from=...)`` (see the module docstring).
        episodes: (B, T, *pattern), B >= 2.
        shift: episode b is scored against the memory written from episode (b − shift) mod B; must not be a
            multiple of B.
        seed: the RNG seed used for both passes (same samples); the global RNG state is restored afterwards.
        options: passed to ``elbo_terms`` (e.g. ``sample=True`` for the Kanerva family).

    Returns:
        {"elbo_own": (B,), "elbo_swap": (B,), "swap_gap": (B,)} in nats per frame; swap_gap = own − swap.
    """
    b = episodes.shape[0]
    if b < 2:
        raise BadInput(f"the swap test needs at least 2 episodes in the batch, got {b}")
    if shift % b == 0:
        raise BadInput(f"shift {shift} is a multiple of the batch size {b}: every episode would keep its own memory")
    was_training = model.training
    model.eval()
    other = episodes.roll(shift, 0)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            own = frame_elbo(model, episodes, episodes, **options)
            torch.manual_seed(seed)
            swapped = frame_elbo(model, episodes, other, **options)
    finally:
        model.train(was_training)
    return {"elbo_own": own, "elbo_swap": swapped, "swap_gap": own - swapped}


def swap_gap(
    model: torch.nn.Module, batches: Iterable[Tensor], seed: int = 0, shift: int = 1, **options: Any
) -> dict[str, float]:
    """``swap_test`` over several (B, T, *pattern) batches -> {"swap_gap", "swap_gap_ci", "elbo_own",
    "elbo_swap", "episodes"}: means over all episodes and the 95% CI half-width of the gap, nats per frame.

    Batches of one episode (long episodes, B = 1) are pooled in consecutive pairs, so that each has another
    episode's memory to be scored against; a last lone episode is left out (``episodes`` counts those scored)."""
    parts: dict[str, list[Tensor]] = {}
    pending: list[Tensor] = []
    groups = 0
    for x in batches:
        pending.append(x)
        if sum(p.shape[0] for p in pending) < 2:
            continue
        group = pending[0] if len(pending) == 1 else torch.cat(pending)
        pending = []
        for k, v in swap_test(model, group, shift=shift, seed=seed * 1_000_003 + groups, **options).items():
            parts.setdefault(k, []).append(v.detach().cpu().double())
        groups += 1
    if not parts:
        raise BadInput("swap_gap needs at least two episodes in all")
    values = {k: torch.cat(v) for k, v in parts.items()}
    gap, ci = mean_ci(values["swap_gap"])
    return {"swap_gap": gap, "swap_gap_ci": ci, "elbo_own": float(values["elbo_own"].mean()),
            "elbo_swap": float(values["elbo_swap"].mean()), "episodes": len(values["swap_gap"])}  # fmt: skip
