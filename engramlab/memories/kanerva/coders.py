"""Networks shared by the Kanerva family: image decoder, dense heads, diagonal-Gaussian helpers, iterative read.

The decoder is "a simple conv-transpose network with EvoNormS0 inter-spliced between each layer"
(Kanerva++ App. E); we use GroupNorm + Swish, which the paper says EvoNormS0 resembles.
Dense models are "three layer deep ... dense models with a latent dimension of 512 coupled with
spectral normalization" (App. E); the width is a config field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import MemoryConfig
from engramlab.nn.fast import OutputConv2d
from engramlab.nn.likelihoods import Likelihood, build_likelihood
from engramlab.nn.tsm import TSMResNet18

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class ImageCodersConfig(MemoryConfig):
    """Fields shared by the Kanerva family (K++, DKM, the VAE baseline): the likelihood ("bernoulli" for
    binarized data, "dlml" discretised logistic mixture of ``dlml_mixtures`` for 8-bit data, "gaussian"),
    the TSM-ResNet18 encoder's base width [64 in K++ App. E] and norm ("batch" [paper] or "group"), and
    the decoder's width."""

    likelihood: Literal["bernoulli", "dlml", "gaussian"] = "bernoulli"
    dlml_mixtures: int = 5
    encoder_width: int = 16
    encoder_norm: Literal["batch", "group"] = "batch"
    decoder_width: int = 32


def likelihood_and_encoder(
    name: str, config: ImageCodersConfig, pattern_shape: tuple[int, ...], shift: bool = True
) -> tuple[Likelihood, TSMResNet18]:
    """The likelihood over (C, H, W) images and the TSM-ResNet18 encoder of a Kanerva-family model."""
    if len(pattern_shape) != 3:
        raise BadConfig(f"{name} needs image patterns (C, H, W), got pattern_shape {tuple(pattern_shape)}")
    options = {"n_mix": config.dlml_mixtures} if config.likelihood == "dlml" else {}
    likelihood = build_likelihood(config.likelihood, event_dims=3, **options)
    return likelihood, TSMResNet18(pattern_shape[0], config.encoder_width, config.encoder_norm, shift=shift)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(next(g for g in (8, 4, 2, 1) if channels % g == 0), channels)


def dense(sizes: list[int], spectral: bool = True) -> nn.Sequential:
    """An MLP sizes[0] -> ... -> sizes[-1] with ReLU between layers, optionally spectrally normalised."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        layers.append(spectral_norm(lin) if spectral else lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ImageDecoder(nn.Module):
    """z (..., L) -> likelihood parameters (..., P, H, W) by conv-transposes (GroupNorm + Swish).

    H and W must be divisible by 4: a linear layer makes (4·width, H/4, W/4), then two stride-2
    transposed convolutions double the resolution, and a 3×3 convolution gives P channels.
    """

    def __init__(self, latent: int, out_channels: int, image_hw: tuple[int, int], width: int = 32):
        super().__init__()
        h, w = image_hw
        if h % 4 or w % 4 or h < 4 or w < 4:
            raise BadConfig(f"the Kanerva decoder needs image height and width divisible by 4, got {h}×{w}")
        self.start = (4 * width, h // 4, w // 4)
        self.project = nn.Linear(latent, 4 * width * (h // 4) * (w // 4))
        self.net = nn.Sequential(
            group_norm(4 * width),
            nn.SiLU(),
            nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1),
            group_norm(2 * width),
            nn.SiLU(),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            group_norm(width),
            nn.SiLU(),
            OutputConv2d(width, out_channels, 3, 1, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        lead = z.shape[:-1]
        h = self.project(z.reshape(-1, z.shape[-1])).reshape(-1, *self.start)
        out = self.net(h)
        return out.reshape(*lead, *out.shape[1:])


def gaussian_kl(mu_q: Tensor, logvar_q: Tensor, mu_p: Tensor, logvar_p: Tensor) -> Tensor:
    """KL(N(mu_q, e^logvar_q) || N(mu_p, e^logvar_p)) summed over the last dimension."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p).square()) / logvar_p.exp() - 1.0).sum(-1)


def standard_normal_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, e^logvar) || N(0, I)) summed over the last dimension."""
    return 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).sum(-1)


def split_gaussian(params: Tensor, min_logvar: float = -10.0, max_logvar: float = 6.0) -> tuple[Tensor, Tensor]:
    """(..., 2L) -> mean (..., L), log-variance (..., L) clamped to a safe range."""
    mu, logvar = params.chunk(2, dim=-1)
    return mu, logvar.clamp(min_logvar, max_logvar)


def reparameterise(mu: Tensor, logvar: Tensor, sample: bool = True) -> Tensor:
    """mu + sigma·eps (Kingma & Welling 2014); the mean when ``sample`` is False."""
    if not sample:
        return mu
    return mu + (0.5 * logvar).exp() * torch.randn_like(mu)


def iterative_read(query: Tensor, steps: int, step: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """Iterative reading of the Kanerva family (K++ Eq. 7; DKM attractor clean-up): x̂ ← step(x̂), from the query.

    query (B, N, C, H, W) -> every iterate [x̂_1, ..., x̂_steps], each (B, N, C, H, W).
    """
    if steps < 1:
        raise BadInput(f"read steps must be >= 1, got {steps}")
    out = [step(query)]
    for _ in range(steps - 1):
        out.append(step(out[-1]))
    return out
