"""Synthetic sources: ±1 strings, VBM linear-Gaussian episodes (Monte Carlo moments), sinusoid tasks."""

import math

import pytest
import torch

from engramlab.episodes.synthetic import binary_strings, linear_gaussian_episodes, sinusoid_tasks
from engramlab.errors import BadConfig


def test_binary_strings_are_balanced_plus_minus_one(gen):
    x = binary_strings(16, 32, 128, gen)
    assert x.shape == (16, 32, 128) and x.dtype == torch.float32
    assert set(x.unique().tolist()) == {-1.0, 1.0} and abs(x.mean().item()) < 0.01


def test_binary_strings_are_deterministic_given_the_generator():
    a = binary_strings(2, 3, 8, torch.Generator().manual_seed(1))
    assert torch.equal(a, binary_strings(2, 3, 8, torch.Generator().manual_seed(1)))


def test_linear_gaussian_episodes_follow_the_generative_model(gen):
    ep = linear_gaussian_episodes(64, 32, 8, 50, gen)
    assert ep.z.shape == (64, 32, 50) and ep.w.shape == (64, 32, 8) and ep.memory.shape == (64, 8, 50)
    assert ep.prior_mean.shape == (64, 8, 50) and ep.noise_std == 1.0
    noise = ep.z - ep.w @ ep.memory  # ε = z − Mᵀw ~ N(0, I)
    assert abs(noise.mean().item()) < 0.01 and abs(noise.var().item() - 1) < 0.02
    dev = ep.memory - ep.prior_mean  # M − R0 ~ N(0, 1)
    assert abs(dev.var().item() - 1) < 0.03 and abs(ep.prior_mean.var().item() - 1) < 0.03
    assert abs(ep.w.var().item() - 1) < 0.03
    # Marginal of z given M: Cov = MᵀM + I; check the variance of one coordinate across T·B draws.
    expected = (ep.memory**2).sum(1).mean().item() + 1
    assert abs(ep.z.var(dim=1).mean().item() / expected - 1) < 0.1


def test_sinusoid_tasks_match_the_mplp_distribution(gen):
    tasks = sinusoid_tasks(20000, 10, gen)
    assert tasks.x.shape == (20000, 10, 1) and tasks.y.shape == (20000, 10, 1)
    assert torch.allclose(tasks.y, tasks.amplitude.view(-1, 1, 1) * torch.sin(tasks.x + tasks.phase.view(-1, 1, 1)))
    assert 0.1 <= tasks.amplitude.min() and tasks.amplitude.max() <= 0.5
    assert abs(tasks.amplitude.mean().item() - 0.3) < 0.005
    assert (
        0 <= tasks.phase.min() and tasks.phase.max() <= math.pi and abs(tasks.phase.mean().item() - math.pi / 2) < 0.03
    )
    assert -5 <= tasks.x.min() and tasks.x.max() <= 5
    assert torch.allclose(tasks.evaluate(tasks.x), tasks.y)


def test_synthetic_sources_reject_bad_sizes(gen):
    with pytest.raises(BadConfig, match="dim"):
        binary_strings(1, 1, 0, gen)
    with pytest.raises(BadConfig, match="noise_std"):
        linear_gaussian_episodes(1, 1, 1, 1, gen, noise_std=0.0)
    with pytest.raises(BadConfig, match="amplitude_range"):
        sinusoid_tasks(1, 1, gen, amplitude_range=(1.0, 0.0))
