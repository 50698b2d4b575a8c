"""Likelihoods: normalisation, agreement with torch.distributions, bad input."""

import math

import pytest
import torch

from engramlab.errors import BadConfig, BadInput
from engramlab.nn.likelihoods import (
    Bernoulli,
    DiscretizedLogisticMixture,
    Gaussian,
    build_likelihood,
    nats_to_bits_per_dim,
)


def test_dlml_normalises_to_one_over_256_values(gen):
    lik = DiscretizedLogisticMixture(event_dims=1, n_mix=3)
    params = torch.randn(1, 9, generator=gen) * 2  # one channel, 3 components: logits, means, log-scales
    params = params.expand(256, 9)
    x = (torch.arange(256, dtype=torch.float32) / 255).reshape(256, 1)
    total = lik.log_prob(params, x).double().exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-4)


def test_dlml_normalises_with_sharp_and_broad_components():
    lik = DiscretizedLogisticMixture(event_dims=1, n_mix=2)
    params = torch.tensor([[0.0, 0.0, -0.3, 0.9, -6.5, 1.5]]).expand(256, 6)  # a very sharp and a broad one
    x = (torch.arange(256, dtype=torch.float32) / 255).reshape(256, 1)
    assert lik.log_prob(params, x).double().exp().sum().item() == pytest.approx(1.0, abs=1e-3)


def test_dlml_single_component_matches_logistic_cdf_difference():
    lik = DiscretizedLogisticMixture(event_dims=1, n_mix=1)
    mu, log_s = 0.1, -2.0
    params = torch.tensor([[0.0, mu, log_s]])
    x = torch.tensor([[100 / 255]])
    xs = 2 * 100 / 255 - 1
    s = math.exp(log_s)

    def cdf(v):
        return 1 / (1 + math.exp(-(v - mu) / s))

    expected = math.log(cdf(xs + 1 / 255) - cdf(xs - 1 / 255))
    assert lik.log_prob(params, x).item() == pytest.approx(expected, rel=1e-4)


def test_dlml_params_layout_and_sampling_stay_on_the_grid(gen):
    lik = build_likelihood("dlml", n_mix=4)
    params = torch.randn(2, lik.param_channels(3), 5, 5, generator=gen)
    sample = lik.sample(params, gen)
    assert sample.shape == (2, 3, 5, 5)
    assert torch.allclose(sample * 255, torch.round(sample * 255), atol=1e-4)
    assert lik.mean(params).min() >= 0 and lik.mean(params).max() <= 1
    assert lik.log_prob(params, sample).shape == (2,)


def test_bernoulli_matches_torch_distributions(gen):
    lik = Bernoulli()
    logits = torch.randn(4, 1, 6, 6, generator=gen)
    x = (torch.rand(4, 1, 6, 6, generator=gen) < 0.5).float()
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(lik.log_prob(logits, x), expected, atol=1e-5)


def test_bernoulli_on_non_binary_data_raises_bad_input(gen):
    with pytest.raises(BadInput, match="binary"):
        Bernoulli().log_prob(torch.zeros(2, 1, 4, 4), torch.rand(2, 1, 4, 4, generator=gen))


def test_gaussian_matches_torch_distributions(gen):
    lik = Gaussian()
    params = torch.randn(3, 2, 4, 4, generator=gen)
    x = torch.rand(3, 1, 4, 4, generator=gen)
    scale = 0.005 + 0.5 * torch.sigmoid(params[:, 1:])
    expected = torch.distributions.Normal(params[:, :1], scale).log_prob(x).sum((1, 2, 3))
    assert torch.allclose(lik.log_prob(params, x), expected, atol=1e-4)


def test_params_of_the_wrong_shape_raise_bad_input():
    with pytest.raises(BadInput, match="params must have shape"):
        Gaussian().log_prob(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4))


def test_unknown_likelihood_raises_bad_config():
    with pytest.raises(BadConfig, match="unknown likelihood"):
        build_likelihood("poisson")


def test_bits_per_dim_conversion():
    assert nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert nats_to_bits_per_dim(-784 * math.log(256), 784, dequantized=True) == pytest.approx(0.0, abs=1e-9)
