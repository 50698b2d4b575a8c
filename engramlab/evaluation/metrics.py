"""Per-episode metrics and their 95% confidence intervals (issue 3, item 9; NOTES.md, Evaluation).

Every per-episode metric takes batched tensors with a leading episode dimension B and returns a
(B,) tensor: one number per episode. Benchmarks then report ``mean_ci`` over episodes, so the
error bar says how much the number would move with another draw of episodes.

Example::

    err = squared_error(read, target)        # (B, N, *pattern) -> (B,)
    mean, ci = mean_ci(err)                  # floats: mean and 95% half-width
    summary = summarize({"error": err})      # {"error": mean, "error_ci": ci}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from scipy import stats
from torch import Tensor

from engramlab.errors import BadInput

__all__ = [
    "mean_ci",
    "squared_error",
    "hamming_error",
    "retrieval_accuracy",
    "nll_to_bits_per_dim",
    "bits_per_dim",
    "summarize",
]


def _as_tensor(values: Tensor | Sequence[float], what: str) -> Tensor:
    if isinstance(values, Tensor):
        t = values.detach()
    else:
        try:
            t = torch.as_tensor(list(values), dtype=torch.float64)
        except (TypeError, ValueError) as e:
            raise BadInput(f"{what} must be a tensor or a sequence of numbers: {e}") from e
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def mean_ci(values: Tensor | Sequence[float], dim: int = 0, confidence: float = 0.95) -> tuple:
    """Mean and half-width of the ``confidence`` interval of the mean, over ``dim`` (episodes).

    Uses Student's t distribution with n−1 degrees of freedom: half-width = t_{(1+c)/2, n−1}·s/√n,
    where s is the sample standard deviation (Bessel-corrected). With one value the half-width is
    NaN (no spread can be estimated); NaN values are not dropped silently — they make a NaN mean.

    Args:
        values: per-episode numbers, a tensor (n, ...) or a sequence of n floats.
        dim: the episode dimension.
        confidence: in (0, 1), 0.95 by default.

    Returns:
        (mean, half_width): Python floats for 1-D input, tensors of the remaining shape otherwise.
    """
    if not 0.0 < confidence < 1.0:
        raise BadInput(f"confidence must lie in (0, 1), got {confidence}")
    t = _as_tensor(values, "values")
    if t.dim() == 0:
        t = t.reshape(1)
    n = t.shape[dim]
    if n == 0:
        raise BadInput("mean_ci needs at least one value, got none")
    mean = t.mean(dim=dim)
    if n == 1:
        half = torch.full_like(mean, float("nan"))
    else:
        std = t.std(dim=dim, correction=1)
        quantile = float(stats.t.ppf(0.5 + confidence / 2.0, df=n - 1))
        half = quantile * std / math.sqrt(n)
    if mean.dim() == 0:
        return float(mean), float(half)
    return mean, half


def _check_pair(read: Tensor, target: Tensor, what: str) -> None:
    if not isinstance(read, Tensor) or not isinstance(target, Tensor):
        raise BadInput(f"{what}: read and target must be tensors")
    if read.shape != target.shape:
        raise BadInput(f"{what}: read shape {tuple(read.shape)} differs from target shape {tuple(target.shape)}")
    if read.dim() < 3:
        raise BadInput(f"{what}: expected (B, N, *pattern) tensors, got shape {tuple(read.shape)}")


def squared_error(read: Tensor, target: Tensor) -> Tensor:
    """Per-episode squared error: summed over pattern dimensions, averaged over the N patterns.

    ``sum_d (read − target)²`` is the per-pattern squared error the EBMM paper plots; dividing by
    the number of pattern entries gives the per-pixel MSE if that is wanted.

    Args:
        read, target: (B, N, *pattern).

    Returns:
        (B,) mean over patterns of the summed squared error.
    """
    _check_pair(read, target, "squared_error")
    diff = (read - target).flatten(2)
    return diff.pow(2).sum(-1).mean(-1)


def hamming_error(read: Tensor, target: Tensor, threshold: float | None = None, count: bool = False) -> Tensor:
    """Per-episode Hamming error between binarised reads and binary targets.

    Both tensors are binarised at ``threshold`` (``x > threshold``): by default 0 when the target
    contains negative values (±1 strings) and 0.5 otherwise ({0, 1} images). The default result is
    the **fraction** of wrong bits (mean over pattern dimensions and over the N patterns);
    ``count=True`` gives the number of wrong bits per pattern (sum over dimensions, mean over N).

    Args:
        read, target: (B, N, *pattern).
        threshold: binarisation threshold; None picks 0 for ±1 data and 0.5 for {0,1} data.
        count: return wrong bits per pattern instead of the fraction.

    Returns:
        (B,) float tensor.
    """
    _check_pair(read, target, "hamming_error")
    if threshold is None:
        threshold = 0.0 if bool((target < 0).any()) else 0.5
    wrong = ((read > threshold) != (target > threshold)).flatten(2).to(torch.float32)
    per_pattern = wrong.sum(-1) if count else wrong.mean(-1)
    return per_pattern.mean(-1)


def retrieval_accuracy(read: Tensor, stored: Tensor, target_index: Tensor) -> Tensor:
    """Per-episode fraction of reads whose nearest stored pattern (Euclidean) is their own.

    Args:
        read: (B, N, *pattern) reconstructions.
        stored: (B, T, *pattern) the patterns written in each episode.
        target_index: (B, N) or (N,) long, the index in ``stored`` of the pattern each query came
            from. Ties in distance count as correct only if the own pattern is the first minimum.

    Returns:
        (B,) accuracy in [0, 1].
    """
    if read.dim() < 3 or stored.dim() != read.dim() or read.shape[0] != stored.shape[0]:
        raise BadInput(
            f"retrieval_accuracy: read (B, N, *pattern) and stored (B, T, *pattern) must agree, "
            f"got {tuple(read.shape)} and {tuple(stored.shape)}"
        )
    if read.shape[2:] != stored.shape[2:]:
        raise BadInput(f"retrieval_accuracy: pattern shapes differ: {tuple(read.shape)} vs {tuple(stored.shape)}")
    B, N = read.shape[:2]
    idx = torch.as_tensor(target_index, device=read.device).long()
    if idx.dim() == 1:
        idx = idx.expand(B, N)
    if idx.shape != (B, N):
        raise BadInput(f"retrieval_accuracy: target_index must be (B, N) = ({B}, {N}), got {tuple(idx.shape)}")
    if bool((idx < 0).any()) or bool((idx >= stored.shape[1]).any()):
        raise BadInput(f"retrieval_accuracy: target_index out of range [0, {stored.shape[1]})")
    dist = torch.cdist(read.flatten(2).float(), stored.flatten(2).float())  # (B, N, T)
    nearest = dist.argmin(-1)
    return (nearest == idx).to(torch.float32).mean(-1)


def nll_to_bits_per_dim(nll_nats: Tensor | float, dims: int, continuous: bool = False) -> Tensor | float:
    """Convert a per-example negative log-likelihood in nats into bits per dimension.

    NOTES.md, Evaluation conventions:
      - discrete model (e.g. Bernoulli on binarised pixels): NLL / (D ln 2);
      - continuous density on data in [0, 1) with uniform dequantisation x/256 + U[0, 1/256):
        (−log p + D ln 256) / (D ln 2), i.e. the density in [0,1) units is converted to a
        probability mass on the 256 pixel levels.

    Args:
        nll_nats: −log p(x) per example (tensor of any shape, or a float).
        dims: D, the number of dimensions per example (e.g. 3072 for CIFAR-10).
        continuous: whether ``nll_nats`` is a continuous density on [0, 1).
    """
    if int(dims) <= 0:
        raise BadInput(f"dims must be a positive integer, got {dims}")
    shift = dims * math.log(256.0) if continuous else 0.0
    return (nll_nats + shift) / (dims * math.log(2.0))


bits_per_dim = nll_to_bits_per_dim


def summarize(per_episode: Mapping[str, Tensor | Sequence[float]], confidence: float = 0.95) -> dict[str, float]:
    """``{name: (B,) values}`` -> ``{name: mean, name_ci: half-width}`` (the BenchResult row convention)."""
    out: dict[str, float] = {}
    for name, values in per_episode.items():
        t = _as_tensor(values, name).flatten()
        mean, half = mean_ci(t, confidence=confidence)
        out[name] = mean
        out[f"{name}_ci"] = half
    return out
