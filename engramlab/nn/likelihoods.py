"""Observation likelihoods p(x | params) shared by the generative memories (K++, DKM, VBM).

- ``Bernoulli``: binary data, parameters are logits (Kanerva++ §4, binarized MNIST/Omniglot).
- ``Gaussian``: continuous data, a mean and a scale per value (VBM code: scale 0.005+0.5·sigmoid).
- ``DiscretizedLogisticMixture``: 8-bit data as in PixelCNN++ (Salimans et al. 2017, §2.1), used
  by Kanerva++ for continuous datasets. Simplification: each channel has its own mixture (no
  linear dependence of a channel's mean on the previous channels).

Every likelihood maps a decoder output ``params`` of shape (..., param_channels(C), *spatial)
and data ``x`` of shape (..., C, *spatial) to a log-probability per example, summed over the
last ``event_dims`` dimensions (the channel dimension and the spatial ones), in nats.

Example::

    lik = build_likelihood("bernoulli")
    params = decoder(z)                  # (B, lik.param_channels(1), 28, 28)
    nll = -lik.log_prob(params, x)       # (B,) nats per image
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from engramlab.errors import BadConfig, BadInput

LOG_2 = math.log(2.0)


class Likelihood:
    """Base class: subclasses set ``name`` and implement the four methods below."""

    name: str = ""
    discrete: bool = False

    def __init__(self, event_dims: int = 3):
        if event_dims < 1:
            raise BadConfig(f"event_dims must be >= 1, got {event_dims}")
        self.event_dims = event_dims

    def param_channels(self, channels: int) -> int:
        """How many decoder output channels are needed to model data with ``channels`` channels."""
        raise NotImplementedError

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """(..., P, *spatial), (..., C, *spatial) -> (...) log p(x) in nats, summed over the event."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """The expected value of x under the likelihood, (..., C, *spatial), in [0, 1]."""
        raise NotImplementedError

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One sample of x, (..., C, *spatial)."""
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------
    def _sum_event(self, values: Tensor) -> Tensor:
        return values.flatten(start_dim=values.dim() - self.event_dims).sum(-1)

    def _check(self, params: Tensor, x: Tensor) -> None:
        if x.dim() < self.event_dims:
            raise BadInput(f"{self.name} likelihood: data needs at least {self.event_dims} dims, got {tuple(x.shape)}")
        channel_dim = x.dim() - self.event_dims
        want = list(x.shape)
        want[channel_dim] = self.param_channels(x.shape[channel_dim])
        if list(params.shape) != want:
            raise BadInput(f"{self.name} likelihood: params must have shape {tuple(want)} for data {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise BadInput(f"{self.name} likelihood: data contains NaN or Inf")


class Bernoulli(Likelihood):
    """p(x) = Π σ(l)^x (1 − σ(l))^(1−x) for binary x ∈ {0, 1}; params are logits l."""

    name = "bernoulli"
    discrete = True

    def param_channels(self, channels: int) -> int:
        return channels

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        self._check(params, x)
        if not ((x == 0) | (x == 1)).all():
            raise BadInput(
                "Bernoulli likelihood needs binary data (every value 0 or 1); binarize the dataset "
                "(binarize='static'|'dynamic'|'threshold') or use the 'gaussian'/'dlml' likelihood"
            )
        return -self._sum_event(F.binary_cross_entropy_with_logits(params, x, reduction="none"))

    def mean(self, params: Tensor) -> Tensor:
        return torch.sigmoid(params)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        u = torch.rand(params.shape, generator=generator, device=params.device, dtype=params.dtype)
        return (u < torch.sigmoid(params)).to(params.dtype)


class Gaussian(Likelihood):
    """p(x) = N(x; μ, s²) per value; params are [μ (C channels), raw scale (C channels)].

    The scale is ``min_scale + max_scale·sigmoid(raw)`` (the VBM paper's code uses 0.005 and 0.5),
    or a fixed ``scale`` when given (then params has C channels: only μ).
    """

    name = "gaussian"

    def __init__(
        self, event_dims: int = 3, min_scale: float = 0.005, max_scale: float = 0.5, scale: float | None = None
    ):
        super().__init__(event_dims)
        if min_scale <= 0 or max_scale <= 0 or (scale is not None and scale <= 0):
            raise BadConfig("Gaussian likelihood scales must be positive")
        self.min_scale, self.max_scale, self.scale = min_scale, max_scale, scale

    def param_channels(self, channels: int) -> int:
        return channels if self.scale is not None else 2 * channels

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        if self.scale is not None:
            return params, torch.full_like(params, self.scale)
        mu, raw = params.chunk(2, dim=params.dim() - self.event_dims)
        return mu, self.min_scale + self.max_scale * torch.sigmoid(raw)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        self._check(params, x)
        mu, scale = self._split(params)
        z = (x - mu) / scale
        return self._sum_event(-0.5 * z.square() - scale.log() - 0.5 * math.log(2 * math.pi))

    def mean(self, params: Tensor) -> Tensor:
        return self._split(params)[0]

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        mu, scale = self._split(params)
        return mu + scale * torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)


class DiscretizedLogisticMixture(Likelihood):
    """Discretised mixture of logistics over ``bins`` values k/(bins−1), k = 0..bins−1 (PixelCNN++ §2.1).

    Per channel and pixel: ``n_mix`` mixture logits, means and log-scales, so params has
    3·n_mix·C channels laid out as [logits (n_mix·C) | means (n_mix·C) | log-scales (n_mix·C)],
    each block channel-major (channel c's components at c·n_mix .. c·n_mix+n_mix−1).
    Data must lie in [0, 1]; it is rounded to the nearest bin. The edge bins take the logistic's
    tails, so the probabilities of the ``bins`` values sum to exactly 1.
    """

    name = "dlml"
    discrete = True

    def __init__(self, event_dims: int = 3, n_mix: int = 5, bins: int = 256):
        super().__init__(event_dims)
        if n_mix < 1 or bins < 2:
            raise BadConfig(f"DLML needs n_mix >= 1 and bins >= 2, got n_mix={n_mix}, bins={bins}")
        self.n_mix, self.bins = n_mix, bins

    def param_channels(self, channels: int) -> int:
        return 3 * self.n_mix * channels

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """-> logits, means, log-scales, each (..., C, n_mix, *spatial) with means on [-1, 1]."""
        cdim = params.dim() - self.event_dims
        logits, means, log_scales = params.chunk(3, dim=cdim)

        def per_channel(t: Tensor) -> Tensor:
            shape = list(t.shape)
            return t.reshape(shape[:cdim] + [shape[cdim] // self.n_mix, self.n_mix] + shape[cdim + 1 :])

        return per_channel(logits), per_channel(means), per_channel(log_scales).clamp(min=-7.0)

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        self._check(params, x)
        if float(x.min()) < -1e-5 or float(x.max()) > 1 + 1e-5:
            raise BadInput(f"DLML likelihood needs data in [0, 1], got [{float(x.min()):.3g}, {float(x.max()):.3g}]")
        logits, means, log_scales = self._split(params)
        cdim = x.dim() - self.event_dims
        half = 1.0 / (self.bins - 1)  # half a bin on the [-1, 1] scale
        k = torch.round(x * (self.bins - 1))
        xs = (2.0 * k / (self.bins - 1) - 1.0).unsqueeze(cdim + 1)  # (..., C, 1, *spatial)
        centered = xs - means
        inv_s = torch.exp(-log_scales)
        plus, minus = inv_s * (centered + half), inv_s * (centered - half)
        log_cdf_plus = F.logsigmoid(plus)  # log σ(plus), used for the lowest bin
        log_one_minus_cdf_minus = -F.softplus(minus)  # log(1 − σ(minus)), used for the highest bin
        cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
        mid = inv_s * centered
        log_pdf_mid = mid - log_scales - 2.0 * F.softplus(mid)  # log density at the bin centre
        # Stable inner bins: log of the CDF difference, or density × bin width when it underflows.
        log_inner = torch.where(
            cdf_delta > 1e-5,
            torch.log(cdf_delta.clamp(min=1e-12)),
            log_pdf_mid + math.log(2.0 * half),
        )
        low = (k == 0).unsqueeze(cdim + 1)
        high = (k == self.bins - 1).unsqueeze(cdim + 1)
        log_bin = torch.where(low, log_cdf_plus, torch.where(high, log_one_minus_cdf_minus, log_inner))
        log_mix = torch.logsumexp(log_bin + F.log_softmax(logits, dim=cdim + 1), dim=cdim + 1)
        return self._sum_event(log_mix)

    def mean(self, params: Tensor) -> Tensor:
        logits, means, _ = self._split(params)
        cdim = params.dim() - self.event_dims
        weights = torch.softmax(logits, dim=cdim + 1)
        return ((weights * means).sum(cdim + 1).clamp(-1, 1) + 1.0) / 2.0

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        logits, means, log_scales = self._split(params)
        cdim = params.dim() - self.event_dims

        def rand(shape: torch.Size) -> Tensor:
            return torch.rand(shape, generator=generator, device=params.device, dtype=params.dtype)

        gumbel = -torch.log(-torch.log(rand(logits.shape).clamp(1e-10, 1 - 1e-10)))
        pick = F.one_hot((logits + gumbel).argmax(cdim + 1), self.n_mix).movedim(-1, cdim + 1).to(params.dtype)
        mu = (pick * means).sum(cdim + 1)
        s = (pick * log_scales).sum(cdim + 1).exp()
        u = rand(mu.shape).clamp(1e-5, 1 - 1e-5)
        xs = (mu + s * (torch.log(u) - torch.log1p(-u))).clamp(-1, 1)
        return torch.round((xs + 1.0) / 2.0 * (self.bins - 1)) / (self.bins - 1)


_LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Gaussian, "dlml": DiscretizedLogisticMixture}


def build_likelihood(name: str, event_dims: int = 3, **options: float | int) -> Likelihood:
    """A likelihood by name: "bernoulli", "gaussian" or "dlml" (discretised logistic mixture)."""
    if name not in _LIKELIHOODS:
        raise BadConfig(f"unknown likelihood '{name}'; known: {', '.join(_LIKELIHOODS)}")
    return _LIKELIHOODS[name](event_dims=event_dims, **options)


def nats_to_bits_per_dim(nll_nats: Tensor | float, dims: int, dequantized: bool = False) -> Tensor | float:
    """NLL in nats per example -> bits/dim (NOTES.md, Evaluation conventions).

    For a discrete model: nll / (D ln 2). For a continuous density on [0, 1) data with uniform
    dequantization (``dequantized=True``): (nll + D ln 256) / (D ln 2).
    """
    shift = dims * math.log(256.0) if dequantized else 0.0
    return (nll_nats + shift) / (dims * LOG_2)
