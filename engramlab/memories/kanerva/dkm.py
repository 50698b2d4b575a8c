"""The Dynamic Kanerva Machine (Wu, Wayne, Gregor, Lillicrap 2018b) and the Kanerva Machine write (2018a).

An episode's frames are encoded to codes z_t = e(x_t) ∈ R^C and written into a Gaussian memory
q(M) = MN(R, U, I_C) starting from the trainable prior p(M) = MN(R0, σ0² I_K, I_C). The memory math
(address solves, writes, matrix-normal KL and sampling) is the shared ``engramlab.nn.linear_gaussian``
and ``engramlab.nn.matrix_normal``; only the DeepMind-code KL form lives here.

- ``write="dynamic"`` (DKM): each z_t is addressed against the current posterior mean,
  μ_w = solve(z_t, R) ("bayes" (RRᵀ+σ_ξ²I)⁻¹Rz or "ridge" (RRᵀ+λI)⁻¹Rz, both named), then written
  by the exact sequential Bayesian (Kalman) update.
- ``write="km"`` (the Kanerva Machine): the write weights come from a learned addressing network
  w_t = A z_t instead of the solve; the Bayesian update and everything else are the same.

Read (training): q(w_t) = N(μ_w(z_t, R), σ_w² I) with a learned scalar σ_w (init 0.3), a memory
sample M̃ ~ q(M), and the decoder on the readout M̃ᵀw_t. The per-image ELBO of the episode is

    ELBO/T = (1/T) Σ_t { E ln p(x_t | M̃ᵀw_t) − KL[q(w_t) ‖ N(0, I)] } − KL[q(M) ‖ p(M)] / T

(no z-KL: codes are deterministic), and the training loss adds the DKM's auxiliary autoencoder
term −ae_weight·ln p(x_t | z_t). KL(M) is the exact matrix-normal KL; ``kl="deepmind"`` is the
public code's form, kept only for compatibility. Iterative reading (attractor clean-up): x̂ ←
decode(Rᵀμ_w(e(x̂), R)). Generation: w ~ N(0, I), decode(M̃ᵀw).

Architecture for the image benchmarks: the same TSM-ResNet18 encoder and decoder as Kanerva++
("DKM w/TSM (our impl)" of the K++ paper, Table 1).

Example::

    dkm = build_memory("dkm", pattern_shape=(1, 28, 28))
    loss, logs = dkm.loss(EpisodeBatch(patterns=x))     # logs: nll (full ELBO), nll_cond, kl_m, ...
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig
from engramlab.memories.base import Memory, State, register
from engramlab.memories.kanerva.coders import (
    ImageCodersConfig,
    ImageDecoder,
    iterative_read,
    likelihood_and_encoder,
    standard_normal_kl,
)
from engramlab.nn.linear_gaussian import address_bayes, address_ridge, batch_write, online_write
from engramlab.nn.matrix_normal import matrix_normal_kl, rsample


def deepmind_kl(mean: Tensor, cov: Tensor, prior_mean: Tensor, prior_var: Tensor) -> Tensor:
    """The KL(q(M) ‖ p(M)) of the public DKM code, kept only as a named compatibility option (NOTES.md).

    It drops the ½ of the exact matrix-normal KL and uses Σ ln diag(U) in place of ln|U|:
    C·tr(U)/σ0² + ‖R − R0‖²/σ0² − KC + C·(K ln σ0² − Σ ln diag U). It is not a KL divergence. -> (B,).
    """
    k, c = mean.shape[-2:]
    trace = torch.diagonal(cov, dim1=-2, dim2=-1).sum(-1)
    logdiag = torch.diagonal(cov, dim1=-2, dim2=-1).clamp(min=1e-8).log().sum(-1)
    sq = (mean - prior_mean).square().sum((-2, -1))
    return c * trace / prior_var + sq / prior_var - k * c + c * (k * prior_var.log() - logdiag)


@dataclass(frozen=True)
class DKMConfig(ImageCodersConfig):
    """DKM hyperparameters.

    code_size: C. memory_slots: K. addressing: "bayes" | "ridge" solve for μ_w (ridge: λ).
    write: "dynamic" (DKM) | "km" (Kanerva Machine's learned addressing). kl: "exact" | "deepmind".
    obs_noise: σ_ξ² of z = Mᵀw + ξ. w_std_init: initial σ_w. prior_var_init: initial σ0².
    ae_weight: weight of the auxiliary autoencoder term. shift: TSM shift in the encoder.
    read_steps: iterations of the attractor read. likelihood, encoder and decoder: ``ImageCodersConfig``.
    """

    shift: bool = True
    code_size: int = 64
    memory_slots: int = 32
    addressing: Literal["bayes", "ridge"] = "bayes"
    ridge: float = 1e-3
    write: Literal["dynamic", "km"] = "dynamic"
    kl: Literal["exact", "deepmind"] = "exact"
    obs_noise: float = 1.0
    w_std_init: float = 0.3
    prior_var_init: float = 1.0
    ae_weight: float = 1.0
    read_steps: int = 5

    def __post_init__(self) -> None:
        if min(self.code_size, self.memory_slots, self.read_steps) < 1:
            raise BadConfig("code_size, memory_slots and read_steps must be >= 1")
        if min(self.obs_noise, self.w_std_init, self.prior_var_init, self.ridge) <= 0:
            raise BadConfig("obs_noise, w_std_init, prior_var_init and ridge must be positive")


@dataclass
class DKMState(State):
    """q(M) = MN(mean, cov, I_C): mean (B, K, C), cov (B, K, K)."""

    mean: Tensor
    cov: Tensor


@register("dkm")
class DynamicKanervaMachine(Memory):
    """The Dynamic Kanerva Machine (see the module docstring); ``write="km"`` gives the Kanerva Machine."""

    Config = DKMConfig
    generative = True
    default_pattern_shape = (1, 28, 28)

    def __init__(self, config: DKMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        cfg = config
        name = self.registry_name or "dkm"
        self.likelihood, self.encoder = likelihood_and_encoder(name, cfg, self.pattern_shape, shift=cfg.shift)
        c, h, w = self.pattern_shape
        self.to_code = nn.Linear(self.encoder.out_dim, cfg.code_size)
        self.decoder = ImageDecoder(cfg.code_size, self.likelihood.param_channels(c), (h, w), cfg.decoder_width)
        self.prior_mean = nn.Parameter(torch.randn(cfg.memory_slots, cfg.code_size))  # R0
        self.log_prior_var = nn.Parameter(torch.tensor(math.log(cfg.prior_var_init)))  # ln σ0²
        self.log_w_std = nn.Parameter(torch.tensor(math.log(cfg.w_std_init)))  # ln σ_w
        self.addresser = nn.Linear(cfg.code_size, cfg.memory_slots) if cfg.write == "km" else None

    # -- pieces --------------------------------------------------------------------------------
    def codes(self, x: Tensor) -> Tensor:
        """(B, T, C, H, W) -> (B, T, code_size) deterministic codes z_t = e(x_t)."""
        return self.to_code(self.encoder(2.0 * x - 1.0))

    def _prior_state(self, b: int) -> DKMState:
        k = self.config.memory_slots
        eye = torch.eye(k, device=self.prior_mean.device, dtype=self.prior_mean.dtype)
        return DKMState(self.prior_mean.expand(b, -1, -1), (self.log_prior_var.exp() * eye).expand(b, k, k))

    def _write_codes(self, z: Tensor) -> DKMState:
        cfg = self.config
        prior = self._prior_state(z.shape[0])
        if cfg.write == "km":
            mean, cov = batch_write(prior.mean, prior.cov, self.addresser(z), z, cfg.obs_noise)
        else:
            mean, cov, _ = online_write(prior.mean, prior.cov, z, cfg.obs_noise, cfg.addressing, cfg.ridge)
        return DKMState(mean, cov)

    def _address(self, z: Tensor, state: DKMState) -> Tensor:
        if self.config.addressing == "ridge":
            return address_ridge(z, state.mean, self.config.ridge)
        return address_bayes(z, state.mean, self.config.obs_noise)

    # -- the protocol --------------------------------------------------------------------------
    def write(self, episode: Tensor) -> DKMState:
        """(B, T, C, H, W) -> q(M) after writing every code of the episode."""
        self.check_patterns(episode)
        return self._write_codes(self.codes(episode))

    def read(self, query: Tensor, state: DKMState, steps: int | None = None) -> Tensor:
        """Attractor read: (B, N, C, H, W) -> (B, N, C, H, W) after ``steps`` clean-up iterations."""
        return self.read_trajectory(query, state, steps)[-1]

    def read_trajectory(self, query: Tensor, state: DKMState, steps: int | None = None) -> list[Tensor]:
        self.check_patterns(query, "query")

        def step(x: Tensor) -> Tensor:
            w = self._address(self.codes(x), state)
            return self.likelihood.mean(self.decoder(w @ state.mean))  # readout Rᵀμ_w, as rows

        return iterative_read(query, self.config.read_steps if steps is None else steps, step)

    def generate(self, state: DKMState, n: int, sample_memory_: bool = True) -> Tensor:
        """(B, n, C, H, W): w ~ N(0, I), M̃ ~ q(M), decode M̃ᵀw."""
        memory = rsample(state.mean, state.cov) if sample_memory_ else state.mean
        w = torch.randn(memory.shape[0], n, memory.shape[1], device=memory.device, dtype=memory.dtype)
        return self.likelihood.mean(self.decoder(w @ memory))

    def kl_memory(self, state: DKMState) -> Tensor:
        """KL(q(M) ‖ p(M)) per episode, (B,), in the configured form."""
        prior = self._prior_state(state.mean.shape[0])
        if self.config.kl == "deepmind":
            return deepmind_kl(state.mean, state.cov, prior.mean, self.log_prior_var.exp())
        return matrix_normal_kl(state.mean, state.cov, prior.mean, prior.cov)

    def elbo_terms(self, episode: Tensor, sample: bool = True, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """Per-frame terms, each (B, T), nats: rec, kl_w, kl_m (= KL(M)/T), ae (= ln p(x|z)),
        nll_cond = −(rec − kl_w) (conditional) and nll = nll_cond + kl_m (full episode ELBO per image).
        ``write_from`` (B, T', C, H, W): q(M) written from these episodes instead (memory-swap test);
        the frames of ``episode`` are addressed against it, and KL(M) is that q(M)'s, divided by T."""
        self.check_patterns(episode)
        t = episode.shape[1]
        z = self.codes(episode)
        state = self._write_codes(z) if write_from is None else self.write(write_from)
        w_mean = self._address(z, state)
        w_std = self.log_w_std.exp()
        w = w_mean + w_std * torch.randn_like(w_mean) if sample else w_mean
        memory = rsample(state.mean, state.cov) if sample else state.mean
        rec = self.likelihood.log_prob(self.decoder(w @ memory), episode)
        kl_w = standard_normal_kl(w_mean, (2 * self.log_w_std).expand_as(w_mean))
        kl_m = (self.kl_memory(state) / t).unsqueeze(1).expand(-1, t)
        ae = self.likelihood.log_prob(self.decoder(z), episode)
        nll_cond = -(rec - kl_w)
        return {"rec": rec, "kl_w": kl_w, "kl_m": kl_m, "ae": ae, "nll_cond": nll_cond, "nll": nll_cond + kl_m}

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Negative episode ELBO per image plus the auxiliary autoencoder term (DKM loss)."""
        terms = self.elbo_terms(batch.patterns)
        loss = (terms["nll"] - self.config.ae_weight * terms["ae"]).mean()
        return loss, {k: v.mean().detach() for k, v in terms.items()}

    def memory_floats(self, episode_length: int | None = None) -> int:
        k, c = self.config.memory_slots, self.config.code_size
        return k * c + k * (k + 1) // 2  # R and the symmetric U


@register("kanerva-machine")
class KanervaMachine(DynamicKanervaMachine):
    """The Kanerva Machine (Wu et al. 2018a): the DKM with ``write="km"`` (learned write addressing)."""

    def __init__(self, config: DKMConfig, pattern_shape: tuple[int, ...]):
        if config.write != "km":
            config = dataclasses.replace(config, write="km")
        super().__init__(config, pattern_shape)
