"""The Gaussian memory of the (Dynamic) Kanerva Machine: q(M) = MN(R, U, I_C) (Wu et al. 2018a, b).

The memory M ∈ R^{K×C} (K slots, codes of size C) has a matrix-normal prior p(M) = MN(R0, σ0²I_K, I_C)
and posterior q(M) = MN(R, U, I_C): the C columns are independent Gaussians with the same row
covariance U. A code is read as z = Mᵀw + ξ, ξ ~ N(0, σ_ξ² I_C), with addressing weights w ∈ R^K.

Everything is batched over episodes: R (B, K, C), U (B, K, K), codes (B, T, C), weights (B, T, K).

This module holds the math only; it is the place the VBM helper's ``engramlab.nn.linear_gaussian``
and ``engramlab.nn.matrix_normal`` cover as well, and should be replaced by them (one home for the
shared math) once they land.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from engramlab.errors import BadConfig


def solve_addressing(
    codes: Tensor,
    mean: Tensor,
    noise_var: float | Tensor,
    kind: Literal["bayes", "ridge"] = "bayes",
    ridge: float = 1e-3,
) -> Tensor:
    """Mean addressing weights μ_w for codes under memory mean R.

    "bayes": μ_w = (R Rᵀ + σ_ξ² I)⁻¹ R z, the posterior mean of w under p(w) = N(0, I) (the VBM form).
    "ridge": μ_w = (R Rᵀ + λ I)⁻¹ R z with a small λ, the least-squares solve of the DKM code.
    codes (B, T, C), mean (B, K, C) -> (B, T, K).
    """
    k = mean.shape[-2]
    reg = noise_var if kind == "bayes" else ridge
    if kind not in ("bayes", "ridge"):
        raise BadConfig(f"addressing solve must be 'bayes' or 'ridge', got {kind!r}")
    gram = mean @ mean.transpose(-1, -2) + reg * torch.eye(k, device=mean.device, dtype=mean.dtype)
    rhs = mean @ codes.transpose(-1, -2)  # (B, K, T)
    return torch.linalg.solve(gram, rhs).transpose(-1, -2)


def sequential_write(mean: Tensor, cov: Tensor, weights: Tensor, codes: Tensor, noise_var: float | Tensor):
    """Exact Bayesian update of q(M) by one observation z_t = Mᵀw_t + ξ at a time (DKM §3, Kalman form).

    For each t: Δ = z_t − Rᵀw_t, σ² = w_tᵀUw_t + σ_ξ², c = Uw_t, R ← R + cΔᵀ/σ², U ← U − ccᵀ/σ².
    mean (B, K, C), cov (B, K, K), weights (B, T, K), codes (B, T, C) -> (mean, cov).
    """
    for t in range(weights.shape[1]):
        mean, cov = _update(mean, cov, weights[:, t], codes[:, t], noise_var)
    return mean, cov


def _update(mean: Tensor, cov: Tensor, w: Tensor, z: Tensor, noise_var: float | Tensor) -> tuple[Tensor, Tensor]:
    delta = z - (mean.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)  # (B, C)
    c = (cov @ w.unsqueeze(-1)).squeeze(-1)  # (B, K)
    s = (w * c).sum(-1, keepdim=True) + noise_var  # (B, 1)
    mean = mean + c.unsqueeze(-1) * delta.unsqueeze(-2) / s.unsqueeze(-1)
    cov = cov - c.unsqueeze(-1) * c.unsqueeze(-2) / s.unsqueeze(-1)
    return mean, 0.5 * (cov + cov.transpose(-1, -2))


def online_write(
    mean: Tensor,
    cov: Tensor,
    codes: Tensor,
    noise_var: float | Tensor,
    kind: Literal["bayes", "ridge"] = "bayes",
    ridge: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    """DKM's dynamic write: each code is addressed against the *current* posterior mean, then written.

    Returns (mean, cov, weights (B, T, K)).
    """
    weights = []
    for t in range(codes.shape[1]):
        w = solve_addressing(codes[:, t : t + 1], mean, noise_var, kind, ridge)[:, 0]
        mean, cov = _update(mean, cov, w, codes[:, t], noise_var)
        weights.append(w)
    return mean, cov, torch.stack(weights, 1)


def batch_write(mean: Tensor, cov: Tensor, weights: Tensor, codes: Tensor, noise_var: float | Tensor):
    """All T observations at once (same posterior as ``sequential_write``, one K×K solve):
    U' = (U⁻¹ + WᵀW/σ²)⁻¹, R' = U'(U⁻¹R + WᵀZ/σ²)."""
    prec = torch.linalg.inv(cov)
    new_cov = torch.linalg.inv(prec + weights.transpose(-1, -2) @ weights / noise_var)
    new_mean = new_cov @ (prec @ mean + weights.transpose(-1, -2) @ codes / noise_var)
    return new_mean, 0.5 * (new_cov + new_cov.transpose(-1, -2))


def matrix_normal_kl(
    mean: Tensor, cov: Tensor, prior_mean: Tensor, prior_var: Tensor, form: Literal["exact", "deepmind"] = "exact"
) -> Tensor:
    """KL(MN(R, U, I_C) ‖ MN(R0, σ0² I_K, I_C)) per episode, (B,).

    "exact": ½[C·tr(U)/σ0² + ‖R − R0‖²/σ0² − KC + C·(K ln σ0² − ln|U|)].
    "deepmind": the form of the public DKM code, kept only for compatibility: no ½ and Σ ln diag(U)
    in place of ln|U| (NOTES.md); it is not a KL divergence.
    """
    k, c = mean.shape[-2:]
    trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    sq = (mean - prior_mean).square().sum((-2, -1))
    if form == "exact":
        logdet = torch.linalg.cholesky(cov).diagonal(dim1=-2, dim2=-1).log().sum(-1) * 2
        return 0.5 * (c * trace / prior_var + sq / prior_var - k * c + c * (k * prior_var.log() - logdet))
    if form == "deepmind":
        logdiag = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=1e-8).log().sum(-1)
        return c * trace / prior_var + sq / prior_var - k * c + c * (k * prior_var.log() - logdiag)
    raise BadConfig(f"matrix-normal KL form must be 'exact' or 'deepmind', got {form!r}")


def sample_memory(mean: Tensor, cov: Tensor, jitter: float = 1e-6) -> Tensor:
    """One reparameterised sample M = R + L ε with L Lᵀ = U, ε ~ N(0, I): (B, K, C)."""
    k = cov.shape[-1]
    chol = torch.linalg.cholesky(cov + jitter * torch.eye(k, device=cov.device, dtype=cov.dtype))
    return mean + chol @ torch.randn_like(mean)
