"""VBM models: a conv encoder/decoder around a memory written by closed-form VB (paper 002, §3-4, App. C, F, G).

Five registered variants share one class and one config; they differ only in the episode-level latent Ω:

* ``vbm-gauss``  q(M) with Gaussian addresses (App. C.1), p(M) = MN(0, I_K, I_C); q(M) starts at the first K codes.
* ``vbm-cat``    categorical addresses (App. C.2), same prior and start (needs T >= K).
* ``vbm-shifted`` one mean-shifted Gaussian memory (App. C.3): the mixture below with H = 1.
* ``vbm-mixture`` H clusters × K rows with mean shifts (App. C.4), q(b) seeded by k-means++ of the episode's codes,
  learned prior means R0 (H, K, C).
* ``vbm-tree``   the code split into G chunks, each its own mixture (App. C.5).

ELBO per frame (App. A): (1/T)[Σ_t E_q[ln p(x_t | z_t)] + E_q[ln p(z_t | y_t, Ω)] + H[q(z_t)] − KL(q(y_t) ‖ p(y_t))
− KL(q(Ω) ‖ p(Ω))], single-sample z_t ~ q(z_t | x_t) in the reconstruction term, every other term exact. The
optional stochastic regulariser (App. F) decodes λ z_t + (1 − λ) ẑ_t with λ ~ Beta(8, 8) and ẑ_t the memory's
reconstruction of the code; an ELBO trained that way is still reported as the exact bound of the model.

Data: patterns in [0, 1], (B, T, C, H, W). "gaussian": uniformly dequantized x + U[0, 1/256) scored by a Gaussian
decoder (scale 0.005 + 0.5·sigmoid), "bernoulli": binary data (thresholded at 0.5 when not binary).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import Memory, MemoryConfig, State, register
from engramlab.memories.vbm.updates import (
    CatWrite,
    GaussWrite,
    MixtureWrite,
    _cluster_loglik,
    _split,
    cat_address_step,
    cat_elbo,
    tree_elbo,
    vb_cat_write,
    vb_gauss_write,
    vb_tree_write,
)
from engramlab.nn.coders import VBMDecoder, VBMEncoder
from engramlab.nn.likelihoods import build_likelihood
from engramlab.nn.linear_gaussian import gauss_address_step, linear_gaussian_elbo
from engramlab.nn.matrix_normal import rsample

__all__ = ["CodedModel", "VBMConfig", "VBMemory", "VBMState"]


@dataclass(frozen=True)
class VBMConfig(MemoryConfig):
    """Hyperparameters (App. F full preset: code 200, rows 32, mixture clusters 10 × rows 6, 50 VB iterations)."""

    code: int = 32  # C, size of the perceptual code z
    rows: int = 8  # K, memory rows (per cluster for mixture/tree)
    clusters: int = 4  # H, mixture clusters (mixture, tree)
    groups: int = 2  # G, code chunks of the tree model
    iters: int = 10  # VB iterations of the write (gradients flow through all of them)
    noise_var: float = 1.0  # σ² of p(z | y, Ω)
    b_prior_var: float = 1.0  # prior variance of the mean shifts b_h
    likelihood: str = "gaussian"  # "gaussian" (dequantized) or "bernoulli"
    width: int = 32  # conv width of encoder and decoder
    stochastic_regulariser: bool = False  # App. F: decode a Beta(8, 8) mix of perceptual and memory codes
    regulariser_concentration: float = 8.0


def _check_config(cfg: VBMConfig) -> None:
    for name in ("code", "rows", "clusters", "groups", "iters", "width"):
        if getattr(cfg, name) < 1:
            raise BadConfig(f"vbm: {name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.noise_var <= 0 or cfg.b_prior_var <= 0:
        raise BadConfig("vbm: noise_var and b_prior_var must be positive")
    if cfg.likelihood not in ("gaussian", "bernoulli"):
        raise BadConfig(f"vbm: likelihood must be 'gaussian' or 'bernoulli', got {cfg.likelihood!r}")


class CodedModel(Memory):
    """Shared encoder q(z | x), decoder p(x | z) and data handling of the VBM models and their baselines."""

    Config = VBMConfig
    generative = True
    default_pattern_shape = (1, 28, 28)

    def __init__(self, config: VBMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        _check_config(config)
        if len(self.pattern_shape) != 3:
            raise BadConfig(f"{type(self).__name__} needs image patterns (C, H, W), got {self.pattern_shape}")
        ch, h, w = self.pattern_shape
        self.lik = build_likelihood(config.likelihood, event_dims=3)
        self.encoder = VBMEncoder(ch, (h, w), config.code, config.width)
        self.decoder = VBMDecoder(config.code, self.lik.param_channels(ch), (h, w), config.width)

    @property
    def dims(self) -> int:
        return math.prod(self.pattern_shape)

    def prepare(self, x: Tensor) -> Tensor:
        """Patterns in [0, 1] -> the data the likelihood scores (dequantized in training, or binarized)."""
        if self.config.likelihood == "bernoulli":
            return (x > 0.5).to(x.dtype) if not bool(((x == 0) | (x == 1)).all()) else x
        return (torch.floor(x * 255.0) + torch.rand_like(x)) / 256.0  # uniform dequantization (NOTES.md)

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, *shape) -> q(z) mean and variance (B, T, code)."""
        b, t = x.shape[:2]
        mean, var = self.encoder(x.flatten(0, 1))
        return mean.reshape(b, t, -1), var.reshape(b, t, -1)

    def decode(self, z: Tensor) -> Tensor:
        """(B, N, code) -> likelihood parameters (B, N, P, H, W)."""
        return self.decoder(z.flatten(0, 1)).unflatten(0, z.shape[:2])

    def reconstruction(self, z: Tensor, target: Tensor) -> Tensor:
        """Σ over pixels of ln p(x | z): (B, T)."""
        params = self.decoder(z.flatten(0, 1))
        return self.lik.log_prob(params, target.flatten(0, 1)).reshape(z.shape[:2])

    @staticmethod
    def entropy(var: Tensor) -> Tensor:
        """H[q(z_t)] for diagonal Gaussians: (B, T)."""
        return 0.5 * (torch.log(2 * math.pi * math.e * var)).sum(-1)

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.elbo_terms(batch.patterns)
        logs = {k: v.detach().mean() for k, v in terms.items()}
        return -terms["elbo_per_frame"].mean(), logs

    def elbo_terms(self, x: Tensor) -> dict[str, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass
class VBMState(State):
    """q(Ω) of a written episode. Standard memory: mean (B, K, C), cov (B, K, K). Mixture/tree: mean (B, G, H, K, C/G),
    cov (B, G, H, K, K), b_mean (B, G, H, C/G), b_var (B, G, H), counts (B, G, H) (Σ_t q(s_t = h), App. G.1)."""

    mean: Tensor
    cov: Tensor
    b_mean: Tensor | None = None
    b_var: Tensor | None = None
    counts: Tensor | None = None


class VBMemory(CodedModel):
    """A VBM model; ``variant`` in {"gauss", "cat", "mixture"} (mixture covers shifted, mixture and tree)."""

    variant = "gauss"

    def __init__(self, config: VBMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        if self.variant == "mixture":
            if config.code % config.groups:
                raise BadConfig(f"vbm: code {config.code} must be divisible by groups {config.groups}")
            cg = config.code // config.groups
            self.prior_mean = nn.Parameter(torch.randn(config.groups, config.clusters, config.rows, cg) / math.sqrt(cg))

    # ----------------------------------------------------------------------------------------- priors
    def _prior(self, rows: int, clusters: int, like: Tensor) -> Tensor:
        """Prior means, resized (App. G, 'resizing'): rows / clusters beyond the trained ones cycle through them."""
        if self.variant != "mixture":
            return torch.zeros(1, rows, self.config.code, dtype=like.dtype, device=like.device)
        g, h, k, _ = self.prior_mean.shape
        hi = torch.arange(clusters, device=like.device) % h
        ki = torch.arange(rows, device=like.device) % k
        return self.prior_mean[:, hi][:, :, ki]

    def _eye(self, k: int, like: Tensor) -> Tensor:
        return torch.eye(k, dtype=like.dtype, device=like.device)

    # ------------------------------------------------------------------------------------------ write
    def _sizes(self, rows: int | None, clusters: int | None) -> tuple[int, int]:
        rows = self.config.rows if rows is None else rows
        clusters = self.config.clusters if clusters is None else clusters
        if rows < 1 or clusters < 1:
            raise BadInput(f"memory must keep at least one row and one cluster, got rows={rows}, clusters={clusters}")
        return rows, clusters

    def write_codes(self, mu: Tensor, rows: int | None = None, clusters: int | None = None):
        """Closed-form VB write of codes μ_z (B, T, C) -> (VBMState, the full variational write)."""
        cfg = self.config
        rows, clusters = self._sizes(rows, clusters)
        t = mu.shape[1]
        if self.variant in ("gauss", "cat") and t < rows:
            raise BadInput(
                f"{self.registry_name} starts q(M) at the first K codes and needs T >= K; got T={t}, K={rows}"
            )
        r0, u0 = self._prior(rows, clusters, mu), self._eye(rows, mu)
        if self.variant == "gauss":
            q = vb_gauss_write(
                mu,
                r0,
                u0,
                cfg.noise_var,
                cfg.iters,
                init_mean=mu[:, :rows],
                init_cov=u0.expand(mu.shape[0], rows, rows),
            )
            return VBMState(q.mean, q.cov), q
        if self.variant == "cat":
            q = vb_cat_write(mu, r0, u0, cfg.noise_var, cfg.iters, init="codes")
            return VBMState(q.mean, q.cov), q
        g = cfg.groups
        if t < clusters:
            raise BadInput(f"{self.registry_name}: k-means++ needs T >= clusters; got T={t}, H={clusters}")
        b0 = torch.zeros(g, clusters, cfg.code // g, dtype=mu.dtype, device=mu.device)
        q = vb_tree_write(mu, r0, u0, b0, cfg.b_prior_var, clusters, g, cfg.noise_var, cfg.iters)
        bsz = mu.shape[0]
        state = VBMState(
            q.mean.unflatten(0, (bsz, g)), q.cov.unflatten(0, (bsz, g)), q.b_mean.unflatten(0, (bsz, g)),
            q.b_var.unflatten(0, (bsz, g)), q.resp.sum(1).unflatten(0, (bsz, g)),
        )  # fmt: skip
        return state, q

    def write(self, episode: Tensor, rows: int | None = None, clusters: int | None = None) -> VBMState:
        """(B, T, *shape) -> q(Ω). ``rows`` / ``clusters`` resize the memory at test time (App. G)."""
        self.check_patterns(episode)
        mu, _ = self.encode(episode)
        return self.write_codes(mu, rows, clusters)[0]

    # ------------------------------------------------------------------------------------------- ELBO
    def _memory_elbo(self, mu: Tensor, var: Tensor, q, rows: int, clusters: int) -> dict[str, Tensor]:
        cfg = self.config
        r0, u0 = self._prior(rows, clusters, mu), self._eye(rows, mu)
        if self.variant == "gauss":
            return linear_gaussian_elbo(
                mu, q.mean, q.cov, q.w_mean, q.w_cov, r0.expand_as(q.mean), u0, cfg.noise_var, var
            )
        if self.variant == "cat":
            return cat_elbo(mu, q, r0, u0, cfg.noise_var, var)
        b0 = torch.zeros(cfg.groups, clusters, cfg.code // cfg.groups, dtype=mu.dtype, device=mu.device)
        return tree_elbo(mu, q, r0, u0, b0, cfg.b_prior_var, cfg.groups, cfg.noise_var, var)

    def _recall(self, mu: Tensor, state: VBMState) -> Tensor:
        """Memory reconstruction of codes μ_z (B, N, C): address against q(Ω) (one VB address step), then the
        posterior-mean code E[Mᵀw (+ b)] (B, N, C)."""
        cfg = self.config
        if self.variant == "gauss":
            w, _ = gauss_address_step(mu, state.mean, state.cov, cfg.noise_var)
            return w @ state.mean
        if self.variant == "cat":
            return cat_address_step(mu, state.mean, state.cov, cfg.noise_var) @ state.mean
        bsz, n, c = mu.shape
        g, h, k, cg = state.mean.shape[1:]
        chunks = _split(mu, g)  # (B·G, N, C/G)
        mean, cov = state.mean.flatten(0, 1), state.cov.flatten(0, 1)
        b_mean, b_var = state.b_mean.flatten(0, 1), state.b_var.flatten(0, 1)
        target = (chunks.unsqueeze(1) - b_mean.unsqueeze(2)).flatten(0, 1)
        wm, wc = gauss_address_step(target, mean.flatten(0, 1), cov.flatten(0, 1), cfg.noise_var)
        wm, wc = wm.unflatten(0, (bsz * g, h)).transpose(1, 2), wc.unflatten(0, (bsz * g, h))
        probe = MixtureWrite(mean, cov, wm, wc, b_mean, b_var, torch.empty(0))
        ll, kl_w = _cluster_loglik(chunks, probe, cfg.noise_var)
        resp = torch.softmax(ll - kl_w, -1)  # q(s_t), eq. 195
        code = torch.einsum("bnh,bhkc,bnhk->bnc", resp, mean, wm) + resp @ b_mean
        return code.unflatten(0, (bsz, g)).permute(0, 2, 1, 3).reshape(bsz, n, c)

    def readdress(self, mu: Tensor, q):
        """The optimal q(y_t) of codes μ_z (B, N, C) given a written q(Ω) (one VB address step, q(Ω) fixed):
        -> the write result ``q`` with its addresses (and, for mixtures, responsibilities q(s_t)) replaced by those
        of ``mu``. Used to score frames against a memory written from another episode (memory-swap test)."""
        nv = self.config.noise_var
        if self.variant == "gauss":
            w_mean, w_cov = gauss_address_step(mu, q.mean, q.cov, nv)
            return GaussWrite(q.mean, q.cov, w_mean, w_cov)
        if self.variant == "cat":
            return CatWrite(q.mean, q.cov, cat_address_step(mu, q.mean, q.cov, nv))
        chunks = _split(mu, self.config.groups)  # (B·G, N, C/G)
        bg, h, k, cg = q.mean.shape
        target = (chunks.unsqueeze(1) - q.b_mean.unsqueeze(2)).flatten(0, 1)
        wm, wc = gauss_address_step(target, q.mean.flatten(0, 1), q.cov.flatten(0, 1), nv)
        wm, wc = wm.unflatten(0, (bg, h)).transpose(1, 2), wc.unflatten(0, (bg, h))
        probe = MixtureWrite(q.mean, q.cov, wm, wc, q.b_mean, q.b_var, q.resp)
        ll, kl_w = _cluster_loglik(chunks, probe, nv)
        resp = torch.softmax(ll - kl_w, -1) if h > 1 else torch.ones_like(ll)  # q(s_t), eq. 195
        return MixtureWrite(q.mean, q.cov, wm, wc, q.b_mean, q.b_var, resp)

    def elbo_terms(
        self, x: Tensor, rows: int | None = None, clusters: int | None = None, write_from: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Per-episode ELBO terms (B,) and ``elbo_per_frame``; x (B, T, *shape) in [0, 1].

        ``write_from`` (B, T', *shape): q(Ω) is written from these episodes instead of ``x`` (memory-swap test,
        ``engramlab.evaluation.swap``), and the frames of ``x`` get the optimal q(y_t) given that q(Ω)
        (``readdress``); every term of the bound is kept, KL(q(Ω) ‖ p(Ω)) included.
        """
        self.check_patterns(x)
        rows_, clusters_ = self._sizes(rows, clusters)
        target = self.prepare(x)
        mu, var = self.encode(target)
        if write_from is None:
            state, q = self.write_codes(mu, rows, clusters)
        else:
            self.check_patterns(write_from, "write_from")
            state, q = self.write_codes(self.encode(self.prepare(write_from))[0], rows, clusters)
            q = self.readdress(mu, q)
        mem = self._memory_elbo(mu, var, q, rows_, clusters_)
        z = mu + var.sqrt() * torch.randn_like(mu)
        if self.training and self.config.stochastic_regulariser:
            a = self.config.regulariser_concentration
            lam = torch.distributions.Beta(a, a).sample(mu.shape[:2] + (1,)).to(mu)
            z = lam * z + (1 - lam) * self._recall(z, state)
        rec = self.reconstruction(z, target).sum(1)
        t = x.shape[1]
        kl_y = mem["kl_w"] + mem.get("kl_s", 0.0)
        kl_omega = mem["kl_m"] + mem.get("kl_b", 0.0)
        elbo = rec + mem["loglik"] + self.entropy(var).sum(1) - kl_y - kl_omega
        return {
            "elbo": elbo,
            "elbo_per_frame": elbo / t,
            "rec_per_frame": rec / t,
            "kl_omega_per_frame": kl_omega / t,
            "kl_y_per_frame": kl_y / t,
            "loglik_z_per_frame": (mem["loglik"] + self.entropy(var).sum(1)) / t,
        }

    # ------------------------------------------------------------------------------------- uses of q(Ω)
    def read(self, query: Tensor, state: VBMState) -> Tensor:
        """(B, N, *shape) -> reconstructions through the memory (decoder mean of the recalled code)."""
        self.check_patterns(query, "query")
        mu, _ = self.encode(query)
        return self.lik.mean(self.decode(self._recall(mu, state)))

    def iterative_read(self, query: Tensor, state: VBMState, steps: int = 5) -> list[Tensor]:
        """App. G.2 with means instead of samples: read, re-encode the read, read again. -> ``steps`` reads."""
        out, x = [], query
        for _ in range(steps):
            x = self.read(x, state).clamp(0, 1)
            out.append(x)
        return out

    def generate(self, state: VBMState, n: int, generator: torch.Generator | None = None) -> Tensor:
        """App. G.1: Ω ~ q(Ω), y ~ p(y), z ~ p(z | y, Ω), decoder mean -> (B, n, *shape).

        The tree draws its clusters from the episode's pseudo-counts Σ_t q(s_t) (App. G.1), the others from p(y).
        """
        cfg = self.config
        mean = state.mean
        sd = math.sqrt(cfg.noise_var)
        if self.variant in ("gauss", "cat"):
            m = rsample(state.mean, state.cov, generator=generator)
            b, k, c = m.shape
            if self.variant == "gauss":
                w = torch.randn(b, n, k, dtype=m.dtype, device=m.device, generator=generator)
            else:
                idx = torch.randint(0, k, (b, n), device=m.device, generator=generator)
                w = nn.functional.one_hot(idx, k).to(m.dtype)
            z = w @ m + sd * torch.randn(b, n, c, dtype=m.dtype, device=m.device, generator=generator)
        else:
            b, g, h, k, cg = mean.shape
            m = rsample(mean, state.cov, generator=generator)  # (B, G, H, K, C/G)
            bb = state.b_mean + state.b_var.sqrt().unsqueeze(-1) * torch.randn(
                state.b_mean.shape, dtype=m.dtype, device=m.device, generator=generator
            )
            probs = torch.ones_like(state.counts) if g == 1 else state.counts + 1e-6
            s = torch.multinomial(probs.reshape(b * g, h), n, replacement=True, generator=generator).reshape(b, g, n)
            w = torch.randn(b, g, n, k, dtype=m.dtype, device=m.device, generator=generator)
            ms = m.gather(2, s[..., None, None].expand(b, g, n, k, cg))  # (B, G, N, K, C/G)
            z = (w.unsqueeze(-2) @ ms).squeeze(-2) + bb.gather(2, s[..., None].expand(b, g, n, cg))
            z = z + sd * torch.randn(z.shape, dtype=m.dtype, device=m.device, generator=generator)
            z = z.permute(0, 2, 1, 3).reshape(b, n, cfg.code)
        return self.lik.mean(self.decode(z))

    def memory_floats(self, episode_length: int | None = None) -> int:
        cfg = self.config
        if self.variant in ("gauss", "cat"):
            return cfg.rows * cfg.code + cfg.rows * cfg.rows
        h = 1 if self.registry_name == "vbm-shifted" else cfg.clusters
        g = cfg.groups if self.registry_name == "vbm-tree" else 1
        return g * h * (cfg.rows * cfg.code // g + cfg.rows * cfg.rows + cfg.code // g + 1)


@register("vbm-gauss")
class VBMGauss(VBMemory):
    """VBM with Gaussian addresses (App. C.1)."""

    variant = "gauss"


@register("vbm-cat")
class VBMCat(VBMemory):
    """VBM with categorical addresses (App. C.2)."""

    variant = "cat"


class _Mixture(VBMemory):
    variant = "mixture"
    fixed: dict[str, int] = {}

    def __init__(self, config: VBMConfig, pattern_shape: tuple[int, ...]):
        from dataclasses import replace

        super().__init__(replace(config, **self.fixed), pattern_shape)


@register("vbm-shifted")
class VBMShifted(_Mixture):
    """Gaussian, mean-shifted memory (App. C.3): one cluster, one code group."""

    fixed = {"clusters": 1, "groups": 1}


@register("vbm-mixture")
class VBMMixture(_Mixture):
    """Scalable mixture memory (App. C.4): one code group."""

    fixed = {"groups": 1}


@register("vbm-tree")
class VBMTree(_Mixture):
    """Tree-structured memory (App. C.5)."""
