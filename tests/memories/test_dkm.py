"""Dynamic Kanerva Machine: the Gaussian memory math against brute force and Monte Carlo, and the model."""

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import build_memory
from engramlab.memories.kanerva.posterior import (
    batch_write,
    matrix_normal_kl,
    online_write,
    sample_memory,
    sequential_write,
    solve_addressing,
)


def random_spd(k, gen):
    a = torch.randn(k, k, generator=gen, dtype=torch.float64)
    return a @ a.T / k + 0.5 * torch.eye(k, dtype=torch.float64)


def test_sequential_write_equals_brute_force_gaussian_conditioning(gen):
    k, c, t, noise = 4, 3, 6, 0.7
    r0 = torch.randn(k, c, generator=gen, dtype=torch.float64)
    u0 = random_spd(k, gen)
    w = torch.randn(t, k, generator=gen, dtype=torch.float64)
    z = torch.randn(t, c, generator=gen, dtype=torch.float64)
    mean, cov = sequential_write(r0[None], u0[None], w[None], z[None], noise)
    # Brute force: each column m_c ~ N(r0_c, U0) and z_c = W m_c + noise; condition the joint Gaussian.
    gain = u0 @ w.T @ torch.linalg.inv(w @ u0 @ w.T + noise * torch.eye(t, dtype=torch.float64))
    assert torch.allclose(mean[0], r0 + gain @ (z - w @ r0), atol=1e-10)
    assert torch.allclose(cov[0], u0 - gain @ w @ u0, atol=1e-10)


def test_batch_write_equals_sequential_write(gen):
    k, c, t = 5, 4, 7
    r0 = torch.randn(2, k, c, generator=gen, dtype=torch.float64)
    u0 = torch.stack([random_spd(k, gen), random_spd(k, gen)])
    w = torch.randn(2, t, k, generator=gen, dtype=torch.float64)
    z = torch.randn(2, t, c, generator=gen, dtype=torch.float64)
    seq = sequential_write(r0, u0, w, z, 1.0)
    bat = batch_write(r0, u0, w, z, 1.0)
    assert torch.allclose(seq[0], bat[0], atol=1e-9) and torch.allclose(seq[1], bat[1], atol=1e-9)


def test_online_write_addresses_each_code_against_the_running_posterior(gen):
    k, c = 3, 5
    r0 = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    u0 = torch.eye(k, dtype=torch.float64)[None]
    z = torch.randn(1, 4, c, generator=gen, dtype=torch.float64)
    mean, cov, w = online_write(r0, u0, z, 1.0)
    m1, u1 = sequential_write(r0, u0, w[:, :1], z[:, :1], 1.0)
    assert torch.allclose(w[:, 1:2], solve_addressing(z[:, 1:2], m1, 1.0), atol=1e-10)
    assert torch.allclose(mean, sequential_write(r0, u0, w, z, 1.0)[0], atol=1e-10)


def test_bayes_addressing_is_the_posterior_mean_of_w(gen):
    k, c, noise = 4, 6, 0.5
    m = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    z = torch.randn(1, 1, c, generator=gen, dtype=torch.float64)
    # p(w) = N(0, I), z = Mᵀw + N(0, σ²I): Σ_w = (I + M Mᵀ/σ²)⁻¹, μ_w = Σ_w M z / σ².
    sigma_w = torch.linalg.inv(torch.eye(k, dtype=torch.float64) + m[0] @ m[0].T / noise)
    expected = sigma_w @ m[0] @ z[0, 0] / noise
    assert torch.allclose(solve_addressing(z, m, noise, "bayes")[0, 0], expected, atol=1e-10)
    ridge = solve_addressing(z, m, noise, "ridge", ridge=1e-6)[0, 0]
    assert torch.allclose(ridge, torch.linalg.lstsq(m[0].T, z[0, 0]).solution, atol=1e-4)


def test_exact_matrix_normal_kl_equals_sum_of_column_kls(gen):
    k, c = 4, 3
    r = torch.randn(2, k, c, generator=gen, dtype=torch.float64)
    r0 = torch.randn(2, k, c, generator=gen, dtype=torch.float64)
    u = torch.stack([random_spd(k, gen), random_spd(k, gen)])
    var0 = torch.tensor(1.7, dtype=torch.float64)
    mvn = torch.distributions.MultivariateNormal
    expected = sum(
        torch.distributions.kl_divergence(mvn(r[..., j], u), mvn(r0[..., j], var0 * torch.eye(k, dtype=torch.float64)))
        for j in range(c)
    )
    assert torch.allclose(matrix_normal_kl(r, u, r0, var0), expected, atol=1e-10)


def test_exact_matrix_normal_kl_matches_monte_carlo(gen):
    torch.manual_seed(0)
    k, c = 3, 2
    r = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    r0 = torch.zeros(1, k, c, dtype=torch.float64)
    u = random_spd(k, gen)[None]
    var0 = torch.tensor(2.0, dtype=torch.float64)
    samples = sample_memory(r.expand(40000, k, c), u.expand(40000, k, k), jitter=0.0)
    q = torch.distributions.MultivariateNormal(r[0].T, u[0])
    p = torch.distributions.MultivariateNormal(r0[0].T, var0 * torch.eye(k, dtype=torch.float64))
    cols = samples.transpose(-1, -2)  # (S, C, K)
    mc = (q.log_prob(cols) - p.log_prob(cols)).sum(-1).mean()
    assert matrix_normal_kl(r, u, r0, var0).item() == pytest.approx(mc.item(), abs=0.05)


def test_deepmind_kl_form_is_a_named_option_that_differs_from_the_exact_one(gen):
    k, c = 3, 2
    r = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    u = random_spd(k, gen)[None]
    var0 = torch.tensor(1.0, dtype=torch.float64)
    exact = matrix_normal_kl(r, u, torch.zeros_like(r), var0)
    assert not torch.allclose(matrix_normal_kl(r, u, torch.zeros_like(r), var0, "deepmind"), 2 * exact)
    with pytest.raises(BadConfig):
        matrix_normal_kl(r, u, torch.zeros_like(r), var0, "half")


SMALL = dict(encoder_width=8, encoder_norm="group", code_size=8, memory_slots=6, decoder_width=8, read_steps=2)


def small(name="dkm", **extra):
    torch.manual_seed(0)
    return build_memory(name, (1, 8, 8), **{**SMALL, **extra})


def binary(gen, b=2, t=4):
    return (torch.rand(b, t, 1, 8, 8, generator=gen) < 0.4).float()


def test_model_shapes_and_full_elbo_adds_kl_memory_per_frame(gen):
    dkm = small()
    x = binary(gen)
    state = dkm.write(x)
    assert state.mean.shape == (2, 6, 8) and state.cov.shape == (2, 6, 6)
    with torch.no_grad():
        assert dkm.read(x, state).shape == x.shape and dkm.generate(state, 3).shape == (2, 3, 1, 8, 8)
        terms = dkm.elbo_terms(x, sample=False)
    assert torch.allclose(terms["nll"], terms["nll_cond"] + terms["kl_m"])
    assert torch.allclose(terms["kl_m"] * 4, dkm.kl_memory(dkm.write(x)).detach()[:, None].expand(2, 4))
    assert (terms["kl_m"] >= 0).all() and (terms["kl_w"] >= 0).all()
    assert dkm.memory_floats() == 6 * 8 + 21


def test_writing_shrinks_the_memory_covariance(gen):
    dkm = small()
    with torch.no_grad():
        state = dkm.write(binary(gen))
    prior_trace = dkm.log_prior_var.exp() * 6
    assert (torch.diagonal(state.cov, dim1=-2, dim2=-1).sum(-1) < prior_trace).all()


@pytest.mark.parametrize("name", ["dkm", "kanerva-machine"])
def test_tiny_model_overfits_one_episode(gen, name):
    model = small(name)
    x = binary(gen)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(100):
        loss, logs = model.loss(EpisodeBatch(patterns=x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else logs["nll"].item()
    assert logs["nll"].item() < 0.7 * first


def test_kanerva_machine_is_the_dkm_with_the_learned_write_addressing():
    km = small("kanerva-machine")
    assert km.config.write == "km" and km.addresser is not None


def test_bernoulli_on_non_binary_data_raises_bad_input(gen):
    with pytest.raises(BadInput, match="binary"):
        small().loss(EpisodeBatch(patterns=torch.rand(2, 4, 1, 8, 8, generator=gen)))


def test_bad_config_values_raise_bad_config():
    with pytest.raises(BadConfig):
        small(obs_noise=0.0)
    with pytest.raises(BadConfig):
        small(addressing="lstsq")
