"""Matrix-normal distributions MN_{K×C}(R, U, V) (VBM paper 002, App. D; Kanerva Machine, Wu et al. 2018a).

M ∈ R^{K×C} is matrix-normal with mean R (K, C), row covariance U (K, K) and column covariance V (C, C)
iff vec(M) ~ N(vec(R), V ⊗ U) (column-stacking vec). The memories of the VBM and Kanerva families use
V = I_C; ``col_cov=None`` means exactly that and takes the cheaper paths. All functions are batched over
any leading dimensions and follow the device/dtype of their inputs.

One implementation for the repository: the VBM and (Dynamic) Kanerva Machine memories both import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engramlab.errors import BadInput, NumericalError

__all__ = ["MatrixNormal", "cholesky", "logdet_pd", "matrix_normal_kl", "matrix_normal_log_prob", "rsample"]


def cholesky(a: Tensor, what: str = "covariance") -> Tensor:
    """Lower Cholesky factor of a batch of symmetric positive-definite matrices (..., n, n).

    Raises NumericalError naming ``what`` (never a silent NaN) when a matrix is not positive definite.
    """
    if not torch.isfinite(a).all():
        raise NumericalError(f"{what} has non-finite entries; cannot factorise")
    chol, info = torch.linalg.cholesky_ex(0.5 * (a + a.transpose(-1, -2)))
    if bool((info != 0).any()):
        raise NumericalError(f"{what} is not positive definite (Cholesky failed at a pivot); check variances")
    return chol


def logdet_pd(a: Tensor, what: str = "covariance") -> Tensor:
    """log|A| of symmetric positive-definite matrices (..., n, n) via Cholesky -> (...)."""
    return 2.0 * cholesky(a, what).diagonal(dim1=-2, dim2=-1).log().sum(-1)


def _inv_pd(a: Tensor, what: str) -> Tensor:
    chol = cholesky(a, what)
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
    return torch.cholesky_solve(eye, chol)


def matrix_normal_kl(
    mean_q: Tensor,
    row_cov_q: Tensor,
    mean_p: Tensor,
    row_cov_p: Tensor,
    col_cov_q: Tensor | None = None,
    col_cov_p: Tensor | None = None,
) -> Tensor:
    """Exact KL(MN(R_q, U_q, V_q) ‖ MN(R_p, U_p, V_p)) (App. D.1, eq. 239 on vec(M)).

    ½[tr(V_p⁻¹V_q)·tr(U_p⁻¹U_q) + tr(V_p⁻¹ Δᵀ U_p⁻¹ Δ) − KC + C ln(|U_p|/|U_q|) + K ln(|V_p|/|V_q|)],
    Δ = R_q − R_p. Means (..., K, C), row covariances (..., K, K), column covariances (..., C, C) or None
    for I_C. Returns (...). Prior quantities broadcast against the posterior's leading dimensions.
    """
    k, c = mean_q.shape[-2:]
    delta = mean_q - mean_p
    up_inv = _inv_pd(row_cov_p, "prior row covariance U_p")
    tr_u = (up_inv * row_cov_q.transpose(-1, -2)).sum((-2, -1))  # tr(U_p⁻¹ U_q)
    logdet_u = logdet_pd(row_cov_p, "prior row covariance U_p") - logdet_pd(row_cov_q, "row covariance U_q")
    if col_cov_q is None and col_cov_p is None:
        quad = (delta * (up_inv @ delta)).sum((-2, -1))
        return 0.5 * (c * tr_u + quad - k * c + c * logdet_u)
    eye_c = torch.eye(c, dtype=mean_q.dtype, device=mean_q.device)
    vq = eye_c if col_cov_q is None else col_cov_q
    vp = eye_c if col_cov_p is None else col_cov_p
    vp_inv = _inv_pd(vp, "prior column covariance V_p")
    tr_v = (vp_inv * vq.transpose(-1, -2)).sum((-2, -1))
    quad = ((up_inv @ delta) * (delta @ vp_inv)).sum((-2, -1))  # tr(V_p⁻¹ Δᵀ U_p⁻¹ Δ)
    logdet_v = logdet_pd(vp, "prior column covariance V_p") - logdet_pd(vq, "column covariance V_q")
    return 0.5 * (tr_v * tr_u + quad - k * c + c * logdet_u + k * logdet_v)


def rsample(
    mean: Tensor,
    row_cov: Tensor,
    col_cov: Tensor | None = None,
    sample_shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Reparameterised sample M = R + chol(U) E chol(V)ᵀ, E ~ MN(0, I, I) (App. D.2, eq. 257).

    mean (..., K, C), row_cov (..., K, K), col_cov (..., C, C) or None -> (*sample_shape, ..., K, C).
    """
    shape = tuple(sample_shape) + tuple(mean.shape)
    eps = torch.randn(shape, dtype=mean.dtype, device=mean.device, generator=generator)
    out = cholesky(row_cov, "row covariance U") @ eps
    if col_cov is not None:
        out = out @ cholesky(col_cov, "column covariance V").transpose(-1, -2)
    return mean + out


def matrix_normal_log_prob(x: Tensor, mean: Tensor, row_cov: Tensor, col_cov: Tensor | None = None) -> Tensor:
    """log MN(X | R, U, V) = −½[KC ln 2π + C ln|U| + K ln|V| + tr(V⁻¹ (X−R)ᵀ U⁻¹ (X−R))] -> (...)."""
    k, c = mean.shape[-2:]
    delta = x - mean
    lu = cholesky(row_cov, "row covariance U")
    a = torch.linalg.solve_triangular(lu, delta, upper=False)  # L_U⁻¹ Δ
    logdet = c * 2.0 * lu.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    if col_cov is not None:
        lv = cholesky(col_cov, "column covariance V")
        a = torch.linalg.solve_triangular(lv, a.transpose(-1, -2), upper=False).transpose(-1, -2)
        logdet = logdet + k * 2.0 * lv.diagonal(dim1=-2, dim2=-1).log().sum(-1)
    return -0.5 * (k * c * math.log(2 * math.pi) + logdet + a.square().sum((-2, -1)))


@dataclass
class MatrixNormal:
    """MN_{K×C}(mean, row_cov, col_cov): mean (..., K, C), row_cov (..., K, K), col_cov (..., C, C) or None = I_C."""

    mean: Tensor
    row_cov: Tensor
    col_cov: Tensor | None = None

    def __post_init__(self) -> None:
        k, c = self.mean.shape[-2:]
        if self.row_cov.shape[-2:] != (k, k):
            raise BadInput(
                f"row covariance must be (..., {k}, {k}) for a mean (..., {k}, {c}), got {tuple(self.row_cov.shape)}"
            )
        if self.col_cov is not None and self.col_cov.shape[-2:] != (c, c):
            raise BadInput(f"column covariance must be (..., {c}, {c}), got {tuple(self.col_cov.shape)}")

    def rsample(self, sample_shape: tuple[int, ...] = (), generator: torch.Generator | None = None) -> Tensor:
        return rsample(self.mean, self.row_cov, self.col_cov, sample_shape, generator)

    def log_prob(self, x: Tensor) -> Tensor:
        return matrix_normal_log_prob(x, self.mean, self.row_cov, self.col_cov)

    def kl(self, other: MatrixNormal) -> Tensor:
        """KL(self ‖ other) -> (...)."""
        return matrix_normal_kl(self.mean, self.row_cov, other.mean, other.row_cov, self.col_cov, other.col_cov)

    def entropy(self) -> Tensor:
        k, c = self.mean.shape[-2:]
        h = 0.5 * k * c * (1 + math.log(2 * math.pi)) + 0.5 * c * logdet_pd(self.row_cov, "row covariance U")
        if self.col_cov is not None:
            h = h + 0.5 * k * logdet_pd(self.col_cov, "column covariance V")
        return h
