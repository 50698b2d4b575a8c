"""The VAE baseline of Kanerva++ Table 1 (Kingma & Welling 2014) with K++'s encoder and decoder.

Same TSM-ResNet18 encoder, q(z_t|X) head, decoder and likelihood as ``kanerva++``, with the prior
p(z) = N(0, I) in place of the memory prior, so the comparison isolates the memory. The ELBO
ln p(x_t) >= E_q ln p(x_t|z_t) − KL[q(z_t|X) ‖ N(0, I)] is an unconditional bound (with
``shift=True`` the posterior of frame t also sees frames t±1, still a valid amortised q).
It stores nothing per episode: ``write`` returns an empty state and ``memory_floats()`` is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.memories.base import Memory, State, register
from engramlab.memories.kanerva.coders import (
    ImageCodersConfig,
    ImageDecoder,
    iterative_read,
    likelihood_and_encoder,
    reparameterise,
    split_gaussian,
    standard_normal_kl,
)


@dataclass(frozen=True)
class KppVAEConfig(ImageCodersConfig):
    """likelihood, encoder and decoder: ``ImageCodersConfig``; latent: as ``kanerva++``;
    shift: keep the encoder's temporal shift; read_steps: encode-decode iterations of ``read``."""

    latent: int = 64
    shift: bool = True
    read_steps: int = 1


@dataclass
class EmptyState(State):
    """No per-episode memory: a (B, 0) placeholder so the state still carries B."""

    nothing: Tensor


@register("kpp-vae")
class KppVAE(Memory):
    """VAE with Kanerva++'s encoder/decoder (the memory-free baseline)."""

    Config = KppVAEConfig
    generative = True
    default_pattern_shape = (1, 28, 28)

    def __init__(self, config: KppVAEConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        self.likelihood, self.encoder = likelihood_and_encoder("kpp-vae", config, self.pattern_shape, config.shift)
        c, h, w = self.pattern_shape
        self.z_posterior = nn.Linear(self.encoder.out_dim, 2 * config.latent)
        self.decoder = ImageDecoder(config.latent, self.likelihood.param_channels(c), (h, w), config.decoder_width)

    def _posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return split_gaussian(self.z_posterior(self.encoder(2.0 * x - 1.0)))

    def write(self, episode: Tensor) -> EmptyState:
        self.check_patterns(episode)
        return EmptyState(nothing=episode.new_zeros(episode.shape[0], 0))

    def read(self, query: Tensor, state: EmptyState, steps: int | None = None) -> Tensor:
        """(B, N, C, H, W) -> decoder mean at the posterior mean, iterated ``steps`` times."""
        self.check_patterns(query, "query")
        steps = self.config.read_steps if steps is None else steps
        return iterative_read(query, steps, lambda x: self.likelihood.mean(self.decoder(self._posterior(x)[0])))[-1]

    def generate(self, state: EmptyState, n: int) -> Tensor:
        b = state.nothing.shape[0]
        z = torch.randn(b, n, self.config.latent, device=state.nothing.device)
        return self.likelihood.mean(self.decoder(z))

    def elbo_terms(self, episode: Tensor, sample: bool = True, write_from: Tensor | None = None) -> dict[str, Tensor]:
        """Per-frame rec = ln p(x|z), kl_z = KL[q(z|X) ‖ N(0, I)], nll = −ELBO; each (B, T) nats.
        ``write_from`` is accepted for the memory-swap test and ignored: there is no memory (swap gap 0)."""
        self.check_patterns(episode)
        mu, logvar = self._posterior(episode)
        rec = self.likelihood.log_prob(self.decoder(reparameterise(mu, logvar, sample)), episode)
        kl = standard_normal_kl(mu, logvar)
        return {"rec": rec, "kl_z": kl, "nll": kl - rec}

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        terms = self.elbo_terms(batch.patterns)
        return terms["nll"].mean(), {k: v.mean().detach() for k, v in terms.items()}

    def memory_floats(self, episode_length: int | None = None) -> int:
        return 0
