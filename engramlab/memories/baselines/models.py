"""Baselines of the VBM paper (002, §4.3.1) on the same encoder/decoder, data handling and ELBO per frame.

* ``vbm-vae``: VAE (Kingma & Welling 2013), p(z) = N(0, I); no memory.
* ``vbm-ns``: Neural Statistician (Edwards & Storkey 2017): a context c ~ q(c | X) from encoder features
  **mean-pooled over the set** (the official code pools over features instead, NOTES.md), p(c) = N(0, I),
  p(z | c) and q(z | x, c) diagonal Gaussians; KL(q(c) ‖ p(c)) paid once per episode and divided by T.
* ``vbm-dkm``: the Dynamic Kanerva Machine's linear-Gaussian memory write (Wu et al. 2018b) in place of VB: learned
  prior mean R0, U0 = I, one online pass of ridge-addressed exact Bayesian writes, q(w_t) = N(μ_w,t, 0.3 I);
  scored by the same exact ELBO as the VBM models (``engramlab.nn.linear_gaussian``). (The full DKM with its
  own architecture is ``dkm`` in ``engramlab.memories.kanerva``.)

All take the ``VBMConfig`` fields (``rows`` = DKM slots; fields a model does not use are ignored).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engramlab.errors import BadInput
from engramlab.memories.base import State, register
from engramlab.memories.vbm.models import CodedModel, VBMConfig
from engramlab.nn.linear_gaussian import address_ridge, linear_gaussian_elbo, online_write
from engramlab.nn.matrix_normal import rsample


def _kl_diag(mu_q: Tensor, var_q: Tensor, mu_p: Tensor, var_p: Tensor) -> Tensor:
    """KL between diagonal Gaussians, summed over the last dimension."""
    return 0.5 * (var_q / var_p + (mu_q - mu_p).square() / var_p - 1 + var_p.log() - var_q.log()).sum(-1)


@dataclass
class ContextState(State):
    """Per-episode state of the memoryless baselines: q(c) mean/var (NS) or an empty (B, 0) tensor (VAE)."""

    mean: Tensor
    var: Tensor


@register("vbm-vae")
class VAE(CodedModel):
    """VAE on the VBM coders: ELBO per frame E[ln p(x | z)] − KL(q(z | x) ‖ N(0, I))."""

    def elbo_terms(self, x: Tensor, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """``write_from`` is accepted for the memory-swap test and ignored: no memory, swap gap exactly 0."""
        self.check_patterns(x)
        target = self.prepare(x)
        mu, var = self.encode(target)
        z = mu + var.sqrt() * torch.randn_like(mu)
        rec = self.reconstruction(z, target).sum(1)
        kl = _kl_diag(mu, var, torch.zeros_like(mu), torch.ones_like(var)).sum(1)
        t = x.shape[1]
        return {"elbo": rec - kl, "elbo_per_frame": (rec - kl) / t, "rec_per_frame": rec / t}

    def write(self, episode: Tensor) -> ContextState:
        self.check_patterns(episode)
        empty = episode.new_zeros(episode.shape[0], 0)
        return ContextState(empty, empty)

    def read(self, query: Tensor, state: ContextState) -> Tensor:
        self.check_patterns(query, "query")
        mu, _ = self.encode(query)
        return self.lik.mean(self.decode(mu))

    def generate(self, state: ContextState, n: int, generator: torch.Generator | None = None) -> Tensor:
        b = state.mean.shape[0]
        z = torch.randn(b, n, self.config.code, device=state.mean.device, generator=generator)
        return self.lik.mean(self.decode(z))

    def memory_floats(self, episode_length: int | None = None) -> int:
        return 0


@register("vbm-ns")
class NeuralStatistician(CodedModel):
    """Neural Statistician: context from the mean over the set of encoder features."""

    def __init__(self, config: VBMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        feat, c = self.encoder.features, config.code
        self.stat = nn.Sequential(nn.Linear(feat, feat), nn.SiLU(), nn.Linear(feat, 2 * c))
        self.z_post = nn.Linear(feat + c, 2 * c)  # q(z | x, c)
        self.z_prior = nn.Sequential(nn.Linear(c, 2 * c), nn.SiLU(), nn.Linear(2 * c, 2 * c))  # p(z | c)

    @staticmethod
    def _gauss(params: Tensor) -> tuple[Tensor, Tensor]:
        mu, raw = params.chunk(2, -1)
        return mu, 1e-4 + nn.functional.softplus(raw)

    def _features(self, x: Tensor) -> Tensor:
        return self.encoder.embed(x.flatten(0, 1)).unflatten(0, x.shape[:2])  # (B, T, F)

    def context(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        return self._gauss(self.stat(feats.mean(1)))  # pooling over the set (dim 1 = T), not over features

    def elbo_terms(self, x: Tensor, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """Per-episode terms (B,). ``write_from`` (B, T', *shape): q(c) from these episodes instead of ``x``
        (memory-swap test); q(z | x, c) and p(z | c) use that context, KL(q(c) ‖ p(c)) is its own."""
        self.check_patterns(x)
        target = self.prepare(x)
        feats = self._features(target)
        if write_from is None:
            cm, cv = self.context(feats)
        else:
            self.check_patterns(write_from, "write_from")
            cm, cv = self.context(self._features(self.prepare(write_from)))
        c = cm + cv.sqrt() * torch.randn_like(cm)
        t = x.shape[1]
        ce = c.unsqueeze(1).expand(-1, t, -1)
        zm, zv = self._gauss(self.z_post(torch.cat([feats, ce], -1)))
        pm, pv = self._gauss(self.z_prior(ce))
        z = zm + zv.sqrt() * torch.randn_like(zm)
        rec = self.reconstruction(z, target).sum(1)
        kl_z = _kl_diag(zm, zv, pm, pv).sum(1)
        kl_c = _kl_diag(cm, cv, torch.zeros_like(cm), torch.ones_like(cv))
        elbo = rec - kl_z - kl_c
        return {"elbo": elbo, "elbo_per_frame": elbo / t, "rec_per_frame": rec / t, "kl_omega_per_frame": kl_c / t}

    def write(self, episode: Tensor) -> ContextState:
        self.check_patterns(episode)
        return ContextState(*self.context(self._features(episode)))

    def read(self, query: Tensor, state: ContextState) -> Tensor:
        self.check_patterns(query, "query")
        feats = self._features(query)
        ce = state.mean.unsqueeze(1).expand(-1, query.shape[1], -1)
        zm, _ = self._gauss(self.z_post(torch.cat([feats, ce], -1)))
        return self.lik.mean(self.decode(zm))

    def generate(self, state: ContextState, n: int, generator: torch.Generator | None = None) -> Tensor:
        c = state.mean + state.var.sqrt() * torch.randn(state.mean.shape, device=state.mean.device, generator=generator)
        pm, pv = self._gauss(self.z_prior(c.unsqueeze(1).expand(-1, n, -1)))
        z = pm + pv.sqrt() * torch.randn(pm.shape, device=pm.device, generator=generator)
        return self.lik.mean(self.decode(z))

    def memory_floats(self, episode_length: int | None = None) -> int:
        return 2 * self.config.code


@dataclass
class DKMWriteState(State):
    """q(M) = MN(mean (B, K, C), cov (B, K, K), I_C) written by the DKM online write."""

    mean: Tensor
    cov: Tensor


@register("vbm-dkm")
class DKMWrite(CodedModel):
    """The VBM coders with the DKM's online linear-Gaussian write in place of the VB write (paper 002, §4.3.1)."""

    w_var = 0.3  # fixed q(w) variance (NOTES.md)
    ridge = 1e-3

    def __init__(self, config: VBMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        self.prior_mean = nn.Parameter(torch.randn(config.rows, config.code) / math.sqrt(config.code))

    def _prior(self, rows: int | None, like: Tensor) -> tuple[Tensor, Tensor]:
        rows = self.config.rows if rows is None else rows
        if rows < 1:
            raise BadInput(f"memory must keep at least one row, got {rows}")
        r0 = self.prior_mean[torch.arange(rows, device=like.device) % self.config.rows].unsqueeze(0)
        return r0, torch.eye(rows, dtype=like.dtype, device=like.device).unsqueeze(0)

    def _write(self, mu: Tensor, rows: int | None = None):
        r0, u0 = self._prior(rows, mu)
        b = mu.shape[0]
        mean, cov, w = online_write(
            r0.expand(b, -1, -1), u0.expand(b, -1, -1), mu, self.config.noise_var, "ridge", self.ridge
        )
        return mean, cov, w, r0, u0

    def elbo_terms(self, x: Tensor, rows: int | None = None, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """Per-episode terms (B,). ``write_from`` (B, T', *shape): q(M) written from these episodes instead
        (memory-swap test); the frames of ``x`` are then ridge-addressed against its mean (the DKM read)."""
        self.check_patterns(x)
        target = self.prepare(x)
        mu, var = self.encode(target)
        if write_from is None:
            mean, cov, w, r0, u0 = self._write(mu, rows)
        else:
            self.check_patterns(write_from, "write_from")
            mean, cov, _, r0, u0 = self._write(self.encode(self.prepare(write_from))[0], rows)
            w = address_ridge(mu, mean, self.ridge)
        k = mean.shape[-2]
        w_cov = self.w_var * torch.eye(k, dtype=mu.dtype, device=mu.device).expand(mu.shape[0], k, k)
        mem = linear_gaussian_elbo(mu, mean, cov, w, w_cov, r0.expand_as(mean), u0, self.config.noise_var, var)
        z = mu + var.sqrt() * torch.randn_like(mu)
        rec = self.reconstruction(z, target).sum(1)
        t = x.shape[1]
        elbo = rec + mem["loglik"] + self.entropy(var).sum(1) - mem["kl_w"] - mem["kl_m"]
        return {
            "elbo": elbo,
            "elbo_per_frame": elbo / t,
            "rec_per_frame": rec / t,
            "kl_omega_per_frame": mem["kl_m"] / t,
        }

    def write(self, episode: Tensor, rows: int | None = None) -> DKMWriteState:
        self.check_patterns(episode)
        mu, _ = self.encode(episode)
        mean, cov = self._write(mu, rows)[:2]
        return DKMWriteState(mean, cov)

    def read(self, query: Tensor, state: DKMWriteState) -> Tensor:
        self.check_patterns(query, "query")
        mu, _ = self.encode(query)
        w = address_ridge(mu, state.mean, self.ridge)
        return self.lik.mean(self.decode(w @ state.mean))

    def generate(self, state: DKMWriteState, n: int, generator: torch.Generator | None = None) -> Tensor:
        m = rsample(state.mean, state.cov, generator=generator)
        w = torch.randn(m.shape[0], n, m.shape[1], dtype=m.dtype, device=m.device, generator=generator)
        return self.lik.mean(self.decode(w @ m))

    def memory_floats(self, episode_length: int | None = None) -> int:
        return self.config.rows * (self.config.code + self.config.rows)
