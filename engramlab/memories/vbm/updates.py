"""Closed-form mean-field VB memory updates of VBM (paper 002, App. C), pure functions batched over episodes.

No networks here: every function maps perceptual codes μ_z (B, T, C) (the means of q(z_t) given by a
recognition model) and prior parameters to variational parameters. All updates use a general observation
noise σ² = ``noise_var`` in p(z_t | ·) = N(·, σ² I_C); the official TensorFlow code is exact only for σ² = 1
(NOTES.md), see ``engramlab.nn.linear_gaussian`` for the Gaussian form.

* C.1 Gaussian addresses: ``engramlab.nn.linear_gaussian.vb_gauss_write`` (re-exported here).
* C.2 categorical addresses: ``vb_cat_write`` (q(w_t) = Cat_K(θ_t), uniform prior; U stays diagonal when U0 is).
* C.3 Gaussian, mean-shifted (z = Mᵀw + b): ``vb_mixture_write`` with H = 1 (``vb_shifted_write``).
* C.4 scalable mixture (H clusters × K rows, each with a mean shift b_h): ``vb_mixture_write``, q(b) seeded by
  k-means++ on the episode's codes (``kmeans_pp``).
* C.5 tree: ``vb_tree_write`` splits the code into G consecutive chunks, each its own C.4 mixture.

Shapes: mixture memory means R (B, H, K, C), row covariances U (B, H, K, K), q(w | s = h) means (B, T, H, K)
with covariances Σ_w (B, H, K, K) shared over t, q(b_h) = N(μ_b (B, H, C), v_b (B, H) · I_C),
responsibilities q(s_t) = θ (B, T, H). Priors: R0 (H, K, C) or (K, C), U0 (K, K), μ_b0 (H, C) or (C,), v_b0 > 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engramlab.errors import BadInput
from engramlab.nn.linear_gaussian import (
    GaussWrite,
    gauss_address_step,
    gauss_memory_step,
    linear_gaussian_elbo,
    vb_gauss_write,
)
from engramlab.nn.matrix_normal import cholesky, logdet_pd, matrix_normal_kl

__all__ = [
    "CatWrite",
    "GaussWrite",
    "MixtureWrite",
    "cat_address_step",
    "cat_elbo",
    "cat_memory_step",
    "kmeans_pp",
    "linear_gaussian_elbo",
    "mixture_elbo",
    "tree_elbo",
    "vb_cat_write",
    "vb_gauss_write",
    "vb_mixture_write",
    "vb_shifted_write",
    "vb_tree_write",
]


def _check(codes: Tensor, noise_var: float | Tensor, iters: int) -> None:
    if codes.dim() != 3:
        raise BadInput(f"codes must be (B, T, C), got shape {tuple(codes.shape)}")
    if not torch.isfinite(codes).all():
        raise BadInput("codes contain NaN or Inf")
    nv = torch.as_tensor(noise_var)
    if not bool((nv > 0).all()):
        raise BadInput("observation noise variance must be positive")
    if iters < 1:
        raise BadInput(f"iters must be >= 1, got {iters}")


def _log_noise(noise_var: float | Tensor, like: Tensor) -> Tensor:
    return torch.log(torch.as_tensor(noise_var, dtype=like.dtype, device=like.device))


# --------------------------------------------------------------------------------------------- C.2 categorical
@dataclass
class CatWrite:
    """q(M) = MN(R (B, K, C), U (B, K, K), I_C); q(w_t) = Cat_K(probs (B, T, K)) (App. C.2)."""

    mean: Tensor
    cov: Tensor
    probs: Tensor


def cat_address_step(target: Tensor, mean: Tensor, cov: Tensor, noise_var: float | Tensor) -> Tensor:
    """θ_t = softmax(σ⁻²[−½ diag(R Rᵀ + C U) + R μ_z,t]) (App. C.2 eq. 123, general σ²) -> (B, T, K)."""
    c = mean.shape[-1]
    diag = mean.square().sum(-1) + c * torch.diagonal(cov, dim1=-2, dim2=-1)  # diag(R Rᵀ + C U) (B, K)
    logits = (target @ mean.transpose(-1, -2) - 0.5 * diag.unsqueeze(-2)) / noise_var
    return torch.softmax(logits, -1)


def cat_memory_step(
    target: Tensor, probs: Tensor, prior_mean: Tensor, prior_cov: Tensor, noise_var: float | Tensor
) -> tuple[Tensor, Tensor]:
    """U = (U0⁻¹ + σ⁻² diag(Σ_t θ_t))⁻¹, R = U(U0⁻¹ R0 + σ⁻² Σ_t θ_t μ_z,tᵀ) (App. C.2 eqs. 126-127)."""
    k = prior_mean.shape[-2]
    eye = torch.eye(k, dtype=target.dtype, device=target.device)
    prior_prec = torch.cholesky_solve(eye.expand_as(prior_cov).contiguous(), cholesky(prior_cov, "prior U0"))
    prec = prior_prec + torch.diag_embed(probs.sum(-2)) / noise_var
    chol = cholesky(prec, "memory precision U⁻¹")
    cov = torch.cholesky_solve(eye.expand_as(prec).contiguous(), chol)
    mean = torch.cholesky_solve(prior_prec @ prior_mean + probs.transpose(-1, -2) @ target / noise_var, chol)
    return mean, 0.5 * (cov + cov.transpose(-1, -2))


def _codes_init(codes: Tensor, k: int, what: str) -> Tensor:
    if codes.shape[1] < k:
        raise BadInput(
            f"{what} initialises its {k} memory rows from the first codes and needs T >= K; got T={codes.shape[1]}"
        )
    return codes[:, :k]


def vb_cat_write(
    codes: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    noise_var: float | Tensor = 1.0,
    iters: int = 2,
    init: str = "codes",
) -> CatWrite:
    """VB write with categorical addresses (App. C.2): ``iters`` rounds of q(W) then q(M).

    init "codes": q(M) starts at R = the first K codes of the episode (official code; needs T >= K), U = U0;
    "prior": at the prior. codes (B, T, C), prior_mean (…, K, C), prior_cov (…, K, K).
    """
    _check(codes, noise_var, iters)
    b, _, c = codes.shape
    k = prior_mean.shape[-2]
    prior_mean = prior_mean.expand(b, k, c)
    prior_cov = prior_cov.expand(b, k, k)
    if init == "codes":
        mean = _codes_init(codes, k, "VBM-Cat")
    elif init == "prior":
        mean = prior_mean
    else:
        raise BadInput(f"init must be 'codes' or 'prior', got {init!r}")
    cov = prior_cov
    probs = None
    for _ in range(iters):
        probs = cat_address_step(codes, mean, cov, noise_var)
        mean, cov = cat_memory_step(codes, probs, prior_mean, prior_cov, noise_var)
    return CatWrite(mean, cov, probs)


def cat_elbo(
    codes: Tensor,
    q: CatWrite,
    prior_mean: Tensor,
    prior_cov: Tensor,
    noise_var: float | Tensor = 1.0,
    codes_var: Tensor | None = None,
) -> dict[str, Tensor]:
    """Exact ELBO terms (B,) of the categorical-address memory: loglik, kl_w = Σ_t KL(Cat(θ_t) ‖ Cat(1/K)), kl_m."""
    c = codes.shape[-1]
    k = q.mean.shape[-2]
    diag = q.mean.square().sum(-1) + c * torch.diagonal(q.cov, dim1=-2, dim2=-1)
    sq = codes.square().sum(-1) - 2 * (q.probs * (codes @ q.mean.transpose(-1, -2))).sum(-1)
    sq = sq + (q.probs * diag.unsqueeze(-2)).sum(-1)
    if codes_var is not None:
        sq = sq + codes_var.sum(-1)
    loglik = (-0.5 * c * (math.log(2 * math.pi) + _log_noise(noise_var, codes)) - 0.5 * sq / noise_var).sum(-1)
    kl_w = torch.special.xlogy(q.probs, q.probs * k).sum((-2, -1))
    kl_m = matrix_normal_kl(q.mean, q.cov, prior_mean.expand_as(q.mean), prior_cov.expand_as(q.cov))
    return {"loglik": loglik, "kl_w": kl_w, "kl_m": kl_m, "elbo": loglik - kl_w - kl_m}


# ------------------------------------------------------------------------------------------------ k-means++
def kmeans_pp(codes: Tensor, h: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) per episode, batched: the first centre uniformly, each
    next one with probability ∝ squared distance to the nearest chosen centre (App. C.4 initialisation).

    codes (B, T, C) -> (centres (B, H, C), indices (B, H)). Needs T >= H. The loop runs over the H centres,
    never over episodes. Sampling uses ``generator`` (on the codes' device) when given.
    """
    b, t, _ = codes.shape
    if t < h:
        raise BadInput(f"k-means++ needs at least H={h} codes per episode, got T={t}")
    x = codes.detach()
    probs = torch.ones(b, t, dtype=x.dtype, device=x.device)
    d2 = torch.full((b, t), float("inf"), dtype=x.dtype, device=x.device)
    idx = []
    for _ in range(h):
        total = probs.sum(-1, keepdim=True)
        p = torch.where(total > 0, probs / total.clamp_min(1e-30), torch.full_like(probs, 1.0 / t))
        i = torch.multinomial(p, 1, generator=generator).squeeze(-1)  # (B,)
        idx.append(i)
        centre = x[torch.arange(b, device=x.device), i]  # (B, C)
        d2 = torch.minimum(d2, (x - centre.unsqueeze(1)).square().sum(-1))
        probs = d2
    index = torch.stack(idx, 1)
    return codes.gather(1, index.unsqueeze(-1).expand(-1, -1, codes.shape[-1])), index


# ---------------------------------------------------------------------------------------------- C.3 / C.4
@dataclass
class MixtureWrite:
    """Variational parameters of the scalable mixture memory (App. C.4); shapes in the module docstring."""

    mean: Tensor  # R (B, H, K, C)
    cov: Tensor  # U (B, H, K, K)
    w_mean: Tensor  # μ_w (B, T, H, K)
    w_cov: Tensor  # Σ_w (B, H, K, K)
    b_mean: Tensor  # μ_b (B, H, C)
    b_var: Tensor  # v_b (B, H)
    resp: Tensor  # θ (B, T, H)


def _cluster_loglik(codes: Tensor, q: MixtureWrite, noise_var: float | Tensor) -> tuple[Tensor, Tensor]:
    """Per (t, h): E[ln N(z_t | M_hᵀw + b_h, σ² I)] under q(w | s = h) q(M_h) q(b_h), and KL(q(w | h) ‖ N(0, I)).

    -> ((B, T, H), (B, H)); the q(z) variance term is common to all h and added by the caller.
    """
    c = codes.shape[-1]
    k = q.mean.shape[-2]
    mmt = q.mean @ q.mean.transpose(-1, -2) + c * q.cov  # E[M_h M_hᵀ] (B, H, K, K)
    rz = torch.einsum("bhkc,btc->bthk", q.mean, codes)  # R_h μ_z,t
    rb = torch.einsum("bhkc,bhc->bhk", q.mean, q.b_mean)  # R_h μ_b,h
    quad = torch.einsum("bthk,bhkj,bthj->bth", q.w_mean, mmt, q.w_mean)
    tr = (mmt * q.w_cov).sum((-2, -1))  # tr(E[MMᵀ] Σ_w) (B, H)
    zb = codes @ q.b_mean.transpose(-1, -2)  # μ_zᵀ μ_b (B, T, H)
    bb = q.b_mean.square().sum(-1) + c * q.b_var  # E[bᵀb] (B, H)
    sq = codes.square().sum(-1, keepdim=True) - 2 * (q.w_mean * rz).sum(-1) - 2 * zb + quad + tr.unsqueeze(1)
    sq = sq + 2 * (q.w_mean * rb.unsqueeze(1)).sum(-1) + bb.unsqueeze(1)
    ll = -0.5 * c * (math.log(2 * math.pi) + _log_noise(noise_var, codes)) - 0.5 * sq / noise_var
    kl_w_const = 0.5 * (torch.diagonal(q.w_cov, dim1=-2, dim2=-1).sum(-1) - k - logdet_pd(q.w_cov, "Σ_w"))  # (B, H)
    kl_w = kl_w_const.unsqueeze(1) + 0.5 * q.w_mean.square().sum(-1)  # (B, T, H)
    return ll, kl_w


def _prior_mixture(prior_mean: Tensor, prior_cov: Tensor, b: int, h: int) -> tuple[Tensor, Tensor]:
    k, c = prior_mean.shape[-2:]
    return prior_mean.expand(b, h, k, c), prior_cov.expand(b, h, k, k)


def vb_mixture_write(
    codes: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    b_prior_mean: Tensor,
    b_prior_var: float,
    clusters: int,
    noise_var: float | Tensor = 1.0,
    iters: int = 10,
    generator: torch.Generator | None = None,
    init_b: Tensor | None = None,
) -> MixtureWrite:
    """Scalable mixture memory write (App. C.4 eqs. 195-207, general σ²): each round updates q(s), q(b), q(w | s)
    then q(M); q(b_h) starts at k-means++ centres of the episode's codes (or ``init_b`` (B, H, C)), q(M_h) at the
    prior. codes (B, T, C); prior_mean (H, K, C) or (K, C); prior_cov (K, K) or (H, K, K); b_prior_mean (H, C) or
    (C,). Differentiable in the codes and the priors (k-means++ indices are not).
    """
    _check(codes, noise_var, iters)
    if not b_prior_var > 0:
        raise BadInput(f"prior variance of the mean shift must be positive, got {b_prior_var}")
    bsz, t, c = codes.shape
    h = clusters
    r0, u0 = _prior_mixture(prior_mean, prior_cov, bsz, h)
    k = r0.shape[-2]
    mb0 = b_prior_mean.expand(bsz, h, c)
    b_mean = kmeans_pp(codes, h, generator)[0] if init_b is None else init_b
    b_var = torch.full((bsz, h), float(b_prior_var), dtype=codes.dtype, device=codes.device)
    mean, cov = r0, u0

    def w_step(mean, cov, b_mean):
        target = (codes.unsqueeze(1) - b_mean.unsqueeze(2)).reshape(bsz * h, t, c)  # z_t − μ_b,h
        wm, wc = gauss_address_step(target, mean.reshape(bsz * h, k, c), cov.reshape(bsz * h, k, k), noise_var)
        return wm.reshape(bsz, h, t, k).transpose(1, 2), wc.reshape(bsz, h, k, k)

    w_mean, w_cov = w_step(mean, cov, b_mean)
    resp = torch.full((bsz, t, h), 1.0 / h, dtype=codes.dtype, device=codes.device)
    q = MixtureWrite(mean, cov, w_mean, w_cov, b_mean, b_var, resp)
    for _ in range(iters):
        # q(s_t) (eq. 195): softmax over h of E[ln p(z_t | s = h, ·)] − KL(q(w | h) ‖ p(w)); uniform prior
        ll, kl_w = _cluster_loglik(codes, q, noise_var)
        resp = torch.softmax(ll - kl_w, -1) if h > 1 else torch.ones_like(ll)
        # q(b_h) (eqs. 198-199)
        n_h = resp.sum(1)  # (B, H)
        prec = 1.0 / b_prior_var + n_h / noise_var
        rw = torch.einsum("bhkc,bthk->bthc", q.mean, q.w_mean)  # R_hᵀ μ_w,th
        resid = torch.einsum("bth,bthc->bhc", resp, codes.unsqueeze(2) - rw)
        b_mean = (mb0 / b_prior_var + resid / noise_var) / prec.unsqueeze(-1)
        b_var = 1.0 / prec
        # q(w_t | s_t = h) (eqs. 202-203)
        w_mean, w_cov = w_step(q.mean, q.cov, b_mean)
        # q(M_h) (eqs. 206-207), responsibilities weight each frame
        target = (codes.unsqueeze(1) - b_mean.unsqueeze(2)).reshape(bsz * h, t, c)
        mean, cov = gauss_memory_step(
            target,
            w_mean.transpose(1, 2).reshape(bsz * h, t, k),
            w_cov.reshape(bsz * h, k, k),
            r0.reshape(bsz * h, k, c),
            u0.reshape(bsz * h, k, k),
            noise_var,
            resp.transpose(1, 2).reshape(bsz * h, t),
        )
        q = MixtureWrite(mean.reshape(bsz, h, k, c), cov.reshape(bsz, h, k, k), w_mean, w_cov, b_mean, b_var, resp)
    return q


def vb_shifted_write(
    codes: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    b_prior_mean: Tensor,
    b_prior_var: float,
    noise_var: float | Tensor = 1.0,
    iters: int = 10,
) -> MixtureWrite:
    """Gaussian, mean-shifted memory (App. C.3): the C.4 mixture with one cluster, q(b) starting at the prior mean."""
    bsz, _, c = codes.shape
    init = b_prior_mean.reshape(1, 1, c).expand(bsz, 1, c).to(codes)
    return vb_mixture_write(codes, prior_mean, prior_cov, b_prior_mean, b_prior_var, 1, noise_var, iters, init_b=init)


def mixture_elbo(
    codes: Tensor,
    q: MixtureWrite,
    prior_mean: Tensor,
    prior_cov: Tensor,
    b_prior_mean: Tensor,
    b_prior_var: float,
    noise_var: float | Tensor = 1.0,
    codes_var: Tensor | None = None,
) -> dict[str, Tensor]:
    """Exact ELBO terms (B,) of the mixture memory: loglik, kl_s, kl_w, kl_b, kl_m and elbo (App. A, D.1)."""
    bsz, t, c = codes.shape
    h = q.resp.shape[-1]
    ll, kl_w = _cluster_loglik(codes, q, noise_var)
    loglik = (q.resp * ll).sum((-2, -1))
    if codes_var is not None:
        loglik = loglik - 0.5 * codes_var.sum((-2, -1)) / noise_var
    kl_s = torch.special.xlogy(q.resp, q.resp * h).sum((-2, -1))
    kl_w = (q.resp * kl_w).sum((-2, -1))
    mb0 = b_prior_mean.expand(bsz, h, c)
    kl_b = 0.5 * (c * q.b_var / b_prior_var + (q.b_mean - mb0).square().sum(-1) / b_prior_var - c)
    kl_b = (kl_b + 0.5 * c * (math.log(b_prior_var) - torch.log(q.b_var))).sum(-1)
    r0, u0 = _prior_mixture(prior_mean, prior_cov, bsz, h)
    kl_m = matrix_normal_kl(q.mean, q.cov, r0, u0).sum(-1)
    elbo = loglik - kl_s - kl_w - kl_b - kl_m
    return {"loglik": loglik, "kl_s": kl_s, "kl_w": kl_w, "kl_b": kl_b, "kl_m": kl_m, "elbo": elbo}


# ------------------------------------------------------------------------------------------------------- C.5
def _split(codes: Tensor, groups: int) -> Tensor:
    bsz, t, c = codes.shape
    if c % groups:
        raise BadInput(f"tree memory: code size {c} is not divisible by the number of groups {groups}")
    return codes.reshape(bsz, t, groups, c // groups).permute(0, 2, 1, 3).reshape(bsz * groups, t, c // groups)


def _group_priors(prior_mean: Tensor, b_prior_mean: Tensor, bsz: int, groups: int) -> tuple[Tensor, Tensor]:
    """Per-group priors (G, H, K, C/G) and (G, H, C/G) repeated over episodes -> (B·G, …)."""
    pm = prior_mean.unsqueeze(0).expand(bsz, *prior_mean.shape).reshape(bsz * groups, *prior_mean.shape[1:])
    bm = b_prior_mean.unsqueeze(0).expand(bsz, *b_prior_mean.shape).reshape(bsz * groups, *b_prior_mean.shape[1:])
    return pm, bm


def vb_tree_write(
    codes: Tensor,
    prior_mean: Tensor,
    prior_cov: Tensor,
    b_prior_mean: Tensor,
    b_prior_var: float,
    clusters: int,
    groups: int,
    noise_var: float | Tensor = 1.0,
    iters: int = 10,
    generator: torch.Generator | None = None,
) -> MixtureWrite:
    """Tree-structured memory (App. C.5): the code is split into G consecutive chunks z^(g) (C divisible by G),
    each with its own C.4 mixture memory, all written in one batched call.

    prior_mean (G, H, K, C/G), prior_cov (K, K), b_prior_mean (G, H, C/G). The returned MixtureWrite has a
    leading dimension B·G (episode-major: index b·G + g).
    """
    bsz = codes.shape[0]
    chunks = _split(codes, groups)
    if prior_mean.dim() != 4 or prior_mean.shape[0] != groups or prior_mean.shape[-1] * groups != codes.shape[-1]:
        raise BadInput(f"tree memory: prior mean must be (G={groups}, H, K, C/G), got {tuple(prior_mean.shape)}")
    pm, bm = _group_priors(prior_mean, b_prior_mean, bsz, groups)
    return vb_mixture_write(chunks, pm, prior_cov, bm, b_prior_var, clusters, noise_var, iters, generator=generator)


def tree_elbo(
    codes: Tensor,
    q: MixtureWrite,
    prior_mean: Tensor,
    prior_cov: Tensor,
    b_prior_mean: Tensor,
    b_prior_var: float,
    groups: int,
    noise_var: float | Tensor = 1.0,
    codes_var: Tensor | None = None,
) -> dict[str, Tensor]:
    """ELBO terms (B,) of the tree memory: the sum over groups of the per-chunk mixture ELBOs."""
    bsz = codes.shape[0]
    pm, bm = _group_priors(prior_mean, b_prior_mean, bsz, groups)
    cv = None if codes_var is None else _split(codes_var, groups)
    terms = mixture_elbo(_split(codes, groups), q, pm, prior_cov, bm, b_prior_var, noise_var, cv)
    return {name: v.reshape(bsz, groups).sum(-1) for name, v in terms.items()}
