"""The linear-Gaussian memory z = Mᵀw + ξ shared by VBM (paper 002) and the Dynamic Kanerva Machine.

Model (VBM App. C.1 / C.3 with b = 0; DKM, Wu et al. 2018b): p(M) = MN_{K×C}(R0, U0, I_C), p(w_t) = N(0, I_K),
p(z_t | w_t, M) = N(Mᵀw_t, σ² I_C), σ² = ``noise_var``. Shapes are batched over episodes:
codes Z (B, T, C), weights W (B, T, K), memory mean R (B, K, C), row covariance U (B, K, K).

Two families of writers live here, named after where they come from:

* DKM (Wu et al. 2018b): the addresses are point estimates from a solve against the memory mean —
  ``address_ridge`` (ridge on R Rᵀ, the DKM code) or ``address_bayes`` ((R Rᵀ + σ² I)⁻¹ R z, the posterior
  mean of w under p(w) = N(0, I) with M = R fixed) — and the memory is updated by exact Bayesian linear
  regression given those addresses: ``sequential_write`` (Kalman form, one frame at a time),
  ``online_write`` (solve-then-write per frame: DKM's dynamic write), ``batch_write`` (all frames at once)
  and ``batch_iterative_write`` (alternate solve against the current mean and batch write from the prior).
* VB (VBM App. C.1): ``vb_gauss_write``, coordinate ascent on the mean-field ELBO over q(W) q(M), for a
  general observation noise σ² (derived as in App. C.3 with b = 0):

      Σ_w = (I_K + σ⁻²(R Rᵀ + C U))⁻¹,   μ_w,t = σ⁻² Σ_w R μ_z,t
      U   = (U0⁻¹ + σ⁻² Σ_t θ_t (μ_w,t μ_w,tᵀ + Σ_w))⁻¹,   R = U (U0⁻¹ R0 + σ⁻² Σ_t θ_t μ_w,t μ_z,tᵀ)

  (θ_t = 1, or per-frame responsibilities in the mixture model of C.4). The official TensorFlow code uses
  Σ_w = (R Rᵀ + σ² I + C U)⁻¹ and U = (σ² U0⁻¹ + Σ(μμᵀ + Σ_w))⁻¹, which coincide with the above only at
  σ² = 1 (NOTES.md); this module implements the general form.

All solves are Cholesky based and raise NumericalError when a matrix stops being positive definite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engramlab.errors import BadInput
from engramlab.nn.matrix_normal import cholesky, logdet_pd, matrix_normal_kl

__all__ = [
    "GaussWrite",
    "address_bayes",
    "address_ridge",
    "batch_iterative_write",
    "batch_write",
    "gauss_address_step",
    "gauss_memory_step",
    "linear_gaussian_elbo",
    "online_write",
    "sequential_write",
    "vb_gauss_write",
]


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(n, dtype=like.dtype, device=like.device)


def _spd_solve(a: Tensor, b: Tensor, what: str) -> Tensor:
    return torch.cholesky_solve(b, cholesky(a, what))


def _spd_inv(a: Tensor, what: str) -> Tensor:
    return _spd_solve(a, _eye(a.shape[-1], a).expand_as(a).contiguous(), what)


def _check_codes(codes: Tensor, mean: Tensor) -> None:
    if codes.dim() != 3 or mean.dim() != 3 or codes.shape[-1] != mean.shape[-1]:
        raise BadInput(
            f"codes must be (B, T, C) and memory mean (B, K, C); got {tuple(codes.shape)}, {tuple(mean.shape)}"
        )
    if not torch.isfinite(codes).all():
        raise BadInput("codes contain NaN or Inf")


def _check_var(noise_var: float | Tensor) -> None:
    if isinstance(noise_var, Tensor):
        if not bool((noise_var > 0).all()):
            raise BadInput("observation noise variance must be positive")
    elif not noise_var > 0:
        raise BadInput(f"observation noise variance must be positive, got {noise_var}")


# ----------------------------------------------------------------------------------------------- addressing
def address_bayes(codes: Tensor, mean: Tensor, noise_var: float | Tensor) -> Tensor:
    """Posterior mean of w for M = R: μ_w = (R Rᵀ + σ² I)⁻¹ R z (the VBM form).

    codes (B, T, C), mean (B, K, C) -> (B, T, K).
    """
    _check_codes(codes, mean)
    _check_var(noise_var)
    k = mean.shape[-2]
    gram = mean @ mean.transpose(-1, -2) + noise_var * _eye(k, mean)
    return _spd_solve(gram, mean @ codes.transpose(-1, -2), "R Rᵀ + σ² I").transpose(-1, -2)


def address_ridge(codes: Tensor, mean: Tensor, ridge: float = 1e-3) -> Tensor:
    """Least-squares address with a small ridge: μ_w = (R Rᵀ + λ I)⁻¹ R z (the DKM code). -> (B,T,K)."""
    _check_codes(codes, mean)
    if not ridge > 0:
        raise BadInput(f"ridge must be positive, got {ridge}")
    k = mean.shape[-2]
    gram = mean @ mean.transpose(-1, -2) + ridge * _eye(k, mean)
    return _spd_solve(gram, mean @ codes.transpose(-1, -2), "R Rᵀ + λ I").transpose(-1, -2)


def _address(codes: Tensor, mean: Tensor, noise_var: float | Tensor, solve: str, ridge: float) -> Tensor:
    if solve == "ridge":
        return address_ridge(codes, mean, ridge)
    if solve == "bayes":
        return address_bayes(codes, mean, noise_var)
    raise BadInput(f"address solve must be 'ridge' or 'bayes', got {solve!r}")


# ------------------------------------------------------------------------------------------- DKM-style writes
def _kalman(mean: Tensor, cov: Tensor, w: Tensor, z: Tensor, noise_var: float | Tensor) -> tuple[Tensor, Tensor]:
    delta = z - (mean.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1)  # prediction error (B, C)
    c = (cov @ w.unsqueeze(-1)).squeeze(-1)  # U w (B, K)
    s = (w * c).sum(-1, keepdim=True) + noise_var  # wᵀUw + σ² (B, 1)
    mean = mean + c.unsqueeze(-1) * delta.unsqueeze(-2) / s.unsqueeze(-1)
    cov = cov - c.unsqueeze(-1) * c.unsqueeze(-2) / s.unsqueeze(-1)
    return mean, 0.5 * (cov + cov.transpose(-1, -2))


def sequential_write(
    mean: Tensor, cov: Tensor, weights: Tensor, codes: Tensor, noise_var: float | Tensor
) -> tuple[Tensor, Tensor]:
    """Exact Bayesian update of q(M) one frame at a time (DKM §3, Kalman form). -> (R (B,K,C), U (B,K,K)).

    The loop is over frames (the DKM write is sequential by definition), batched over episodes.
    """
    _check_codes(codes, mean)
    for t in range(codes.shape[1]):
        mean, cov = _kalman(mean, cov, weights[:, t], codes[:, t], noise_var)
    return mean, cov


def online_write(
    mean: Tensor,
    cov: Tensor,
    codes: Tensor,
    noise_var: float | Tensor,
    solve: str = "ridge",
    ridge: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    """DKM's online write: frame t is addressed against the current mean, then written (one pass).

    -> (R (B,K,C), U (B,K,K), W (B,T,K)) with W the write-time addresses.
    """
    _check_codes(codes, mean)
    _check_var(noise_var)
    ws = []
    for t in range(codes.shape[1]):
        w = _address(codes[:, t : t + 1], mean, noise_var, solve, ridge)[:, 0]
        mean, cov = _kalman(mean, cov, w, codes[:, t], noise_var)
        ws.append(w)
    return mean, cov, torch.stack(ws, 1)


def batch_write(
    mean: Tensor, cov: Tensor, weights: Tensor, codes: Tensor, noise_var: float | Tensor
) -> tuple[Tensor, Tensor]:
    """All frames at once given the addresses (Bayesian linear regression; Kanerva Machine write):
    U' = (U⁻¹ + WᵀW/σ²)⁻¹, R' = U'(U⁻¹R + WᵀZ/σ²). Equal to ``sequential_write``. -> (R', U')."""
    _check_codes(codes, mean)
    _check_var(noise_var)
    no_spread = weights.new_zeros(*weights.shape[:-2], cov.shape[-1], cov.shape[-1])  # known addresses: Σ_w = 0
    return gauss_memory_step(codes, weights, no_spread, mean, cov, noise_var)


def batch_iterative_write(
    prior_mean: Tensor,
    prior_cov: Tensor,
    codes: Tensor,
    noise_var: float | Tensor,
    iters: int,
    solve: str = "ridge",
    ridge: float = 1e-3,
) -> tuple[Tensor, Tensor, Tensor]:
    """DKM batch-iterative write (VBM §4.2, Fig. 2b): repeat ``iters`` times {W = solve(Z, current R);
    (R, U) = batch_write(prior, W, Z)}. -> (R, U, W)."""
    if iters < 1:
        raise BadInput(f"iters must be >= 1, got {iters}")
    mean, cov = prior_mean, prior_cov
    weights = None
    for _ in range(iters):
        weights = _address(codes, mean, noise_var, solve, ridge)
        mean, cov = batch_write(prior_mean, prior_cov, weights, codes, noise_var)
    return mean, cov, weights


# ------------------------------------------------------------------------------------------------ VB (C.1)
@dataclass
class GaussWrite:
    """Result of the VB write: q(M) = MN(R, U, I_C), q(w_t) = N(μ_w,t, Σ_w) (Σ_w shared by all t, App. C.1)."""

    mean: Tensor  # R (B, K, C)
    cov: Tensor  # U (B, K, K)
    w_mean: Tensor  # μ_w (B, T, K)
    w_cov: Tensor  # Σ_w (B, K, K)


def gauss_address_step(target: Tensor, mean: Tensor, cov: Tensor, noise_var: float | Tensor) -> tuple[Tensor, Tensor]:
    """q(w_t) update (App. C.3 eqs. 173-174, general σ²): Σ_w = (I + σ⁻²(R Rᵀ + C U))⁻¹, μ_w,t = σ⁻² Σ_w R target_t.

    target (B, T, C) is μ_z (or μ_z − μ_b with a mean shift), mean (B, K, C), cov (B, K, K)
    -> (μ_w (B, T, K), Σ_w (B, K, K)).
    """
    k, c = mean.shape[-2:]
    prec = _eye(k, mean) + (mean @ mean.transpose(-1, -2) + c * cov) / noise_var
    chol = cholesky(prec, "address precision I + σ⁻²(R Rᵀ + C U)")
    w_cov = torch.cholesky_solve(_eye(k, mean).expand_as(prec).contiguous(), chol)
    w_mean = torch.cholesky_solve(mean @ target.transpose(-1, -2) / noise_var, chol).transpose(-1, -2)
    return w_mean, 0.5 * (w_cov + w_cov.transpose(-1, -2))


def gauss_memory_step(
    target: Tensor,
    w_mean: Tensor,
    w_cov: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    noise_var: float | Tensor,
    resp: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """q(M) update (App. C.3 eqs. 176-177; C.4 eqs. 206-207 with responsibilities θ_t = ``resp`` (B, T)):

    U = (U0⁻¹ + σ⁻² Σ_t θ_t (μ_w,t μ_w,tᵀ + Σ_w))⁻¹, R = U (U0⁻¹ R0 + σ⁻² Σ_t θ_t μ_w,t target_tᵀ).
    w_cov is (B, K, K) shared by all t or (B, T, K, K). Passing w_cov = 0 gives exact Bayesian linear
    regression with known addresses. -> (R (B, K, C), U (B, K, K)).
    """
    k = prior_mean.shape[-2]
    t = target.shape[-2]
    weighted = w_mean if resp is None else w_mean * resp.unsqueeze(-1)
    if w_cov.dim() == w_mean.dim():  # shared Σ_w
        total = float(t) if resp is None else resp.sum(-1)
        sum_cov = w_cov * (total if resp is None else total[..., None, None])
    else:
        sum_cov = (w_cov if resp is None else w_cov * resp[..., None, None]).sum(-3)
    prior_prec = _spd_inv(prior_cov, "prior row covariance U0")
    prec = prior_prec + (weighted.transpose(-1, -2) @ w_mean + sum_cov) / noise_var
    chol = cholesky(prec, "memory precision U⁻¹")
    cov = torch.cholesky_solve(_eye(k, prec).expand_as(prec).contiguous(), chol)
    mean = torch.cholesky_solve(prior_prec @ prior_mean + weighted.transpose(-1, -2) @ target / noise_var, chol)
    return mean, 0.5 * (cov + cov.transpose(-1, -2))


def vb_gauss_write(
    codes: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    noise_var: float | Tensor = 1.0,
    iters: int = 50,
    init_mean: Tensor | None = None,
    init_cov: Tensor | None = None,
) -> GaussWrite:
    """Mean-field VB write with Gaussian addresses (App. C.1, general σ²): ``iters`` rounds of q(W) then q(M).

    codes μ_z (B, T, C); prior_mean R0 (B or 1, K, C); prior_cov U0 (B or 1, K, K). q(M) starts at
    (init_mean, init_cov), by default the prior. Note R0 = 0 with the default start is a fixed point with
    R = 0 (all addresses zero): start from codes (the VBM models do) or use a non-zero prior mean.
    Differentiable through all iterations (as in the official code).
    """
    _check_codes(codes, prior_mean)
    _check_var(noise_var)
    if iters < 1:
        raise BadInput(f"iters must be >= 1, got {iters}")
    b = codes.shape[0]
    prior_mean = prior_mean.expand(b, *prior_mean.shape[-2:])
    prior_cov = prior_cov.expand(b, *prior_cov.shape[-2:])
    mean = prior_mean if init_mean is None else init_mean
    cov = prior_cov if init_cov is None else init_cov
    w_mean = w_cov = None
    for _ in range(iters):
        w_mean, w_cov = gauss_address_step(codes, mean, cov, noise_var)
        mean, cov = gauss_memory_step(codes, w_mean, w_cov, prior_mean, prior_cov, noise_var)
    return GaussWrite(mean, cov, w_mean, w_cov)


# ---------------------------------------------------------------------------------------------------- ELBO
def linear_gaussian_elbo(
    codes: Tensor,
    mean: Tensor,
    cov: Tensor,
    w_mean: Tensor,
    w_cov: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    noise_var: float | Tensor = 1.0,
    codes_var: Tensor | None = None,
) -> dict[str, Tensor]:
    """Exact ELBO of the linear-Gaussian memory per episode (App. A, D.1), each term (B,):

    loglik = Σ_t E_q[ln N(z_t | Mᵀw_t, σ² I)] with E[M Mᵀ] = R Rᵀ + C U,
    kl_w = Σ_t KL(N(μ_w,t, Σ_w,t) ‖ N(0, I)), kl_m = KL(q(M) ‖ p(M)), elbo = loglik − kl_w − kl_m.
    w_cov is (B, K, K) (shared) or (B, T, K, K); a zero w_cov (point addresses) gives kl_w = +inf unless
    ``w_cov`` is positive definite, so the DKM writers are scored with a fixed positive variance.
    codes_var (B, T, C), the diagonal variance of q(z_t), adds −tr/(2σ²) to loglik when given.
    """
    k, c = mean.shape[-2:]
    t = codes.shape[-2]
    shared = w_cov.dim() == w_mean.dim()
    mmt = mean @ mean.transpose(-1, -2) + c * cov  # E[M Mᵀ] (B, K, K)
    rz = codes @ mean.transpose(-1, -2)  # R μ_z,t (B, T, K)
    quad = (w_mean * (w_mean @ mmt)).sum(-1)  # μᵀ E[MMᵀ] μ (B, T)
    if shared:
        tr = (mmt * w_cov).sum((-2, -1)).unsqueeze(-1).expand_as(quad)  # tr(E[MMᵀ] Σ_w)
    else:
        tr = (mmt.unsqueeze(-3) * w_cov).sum((-2, -1))
    sq = codes.square().sum(-1) - 2 * (rz * w_mean).sum(-1) + quad + tr
    if codes_var is not None:
        sq = sq + codes_var.sum(-1)
    loglik = (
        -0.5 * c * math.log(2 * math.pi)
        - 0.5 * c * torch.log(torch.as_tensor(noise_var, dtype=codes.dtype))
        - 0.5 * sq / noise_var
    ).sum(-1)
    if shared:
        kl_w = 0.5 * (
            t * torch.diagonal(w_cov, dim1=-2, dim2=-1).sum(-1)
            + w_mean.square().sum((-2, -1))
            - t * k
            - t * logdet_pd(w_cov, "Σ_w")
        )
    else:
        kl_w = 0.5 * (
            torch.diagonal(w_cov, dim1=-2, dim2=-1).sum(-1) + w_mean.square().sum(-1) - k - logdet_pd(w_cov, "Σ_w")
        ).sum(-1)
    kl_m = matrix_normal_kl(mean, cov, prior_mean, prior_cov)
    return {"loglik": loglik, "kl_w": kl_w, "kl_m": kl_m, "elbo": loglik - kl_w - kl_m}
