"""Dynamic Kanerva Machine: the Gaussian memory math against brute force and Monte Carlo, and the model."""

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import build_memory
from engramlab.memories.kanerva.dkm import deepmind_kl
from engramlab.nn.linear_gaussian import address_bayes, batch_write, online_write, sequential_write
from engramlab.nn.matrix_normal import matrix_normal_kl, rsample


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


def test_online_write_addresses_each_code_against_the_running_posterior(gen):
    k, c = 3, 5
    r0 = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    u0 = torch.eye(k, dtype=torch.float64)[None]
    z = torch.randn(1, 4, c, generator=gen, dtype=torch.float64)
    mean, cov, w = online_write(r0, u0, z, 1.0, solve="bayes")
    m1, _ = sequential_write(r0, u0, w[:, :1], z[:, :1], 1.0)
    assert torch.allclose(w[:, 1:2], address_bayes(z[:, 1:2], m1, 1.0), atol=1e-10)
    assert torch.allclose(mean, batch_write(r0, u0, w, z, 1.0)[0], atol=1e-10)


def test_exact_kl_of_the_dkm_memory_matches_monte_carlo(gen):
    torch.manual_seed(0)
    k, c = 3, 2
    r = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    r0 = torch.zeros(1, k, c, dtype=torch.float64)
    u = random_spd(k, gen)[None]
    u0 = 2.0 * torch.eye(k, dtype=torch.float64)[None]
    samples = rsample(r, u, sample_shape=(40000,))[:, 0]
    q = torch.distributions.MultivariateNormal(r[0].T, u[0])
    p = torch.distributions.MultivariateNormal(r0[0].T, u0[0])
    cols = samples.transpose(-1, -2)  # (S, C, K): columns are independent Gaussians
    mc = (q.log_prob(cols) - p.log_prob(cols)).sum(-1).mean()
    assert matrix_normal_kl(r, u, r0, u0).item() == pytest.approx(mc.item(), abs=0.05)


def test_deepmind_kl_form_drops_the_half_and_uses_the_diagonal_log_determinant(gen):
    k, c = 3, 2
    r = torch.randn(1, k, c, generator=gen, dtype=torch.float64)
    u = random_spd(k, gen)[None]
    var0 = torch.tensor(1.0, dtype=torch.float64)
    exact = matrix_normal_kl(r, u, torch.zeros_like(r), var0 * torch.eye(k, dtype=torch.float64)[None])
    logdet_gap = torch.diagonal(u, dim1=-2, dim2=-1).log().sum(-1) - torch.logdet(u)
    assert torch.allclose(deepmind_kl(r, u, torch.zeros_like(r), var0), 2 * exact - c * logdet_gap)
    diag = torch.diag_embed(torch.diagonal(u, dim1=-2, dim2=-1))
    exact_diag = matrix_normal_kl(r, diag, torch.zeros_like(r), var0 * torch.eye(k, dtype=torch.float64)[None])
    assert torch.allclose(deepmind_kl(r, diag, torch.zeros_like(r), var0), 2 * exact_diag)


def test_model_kl_option_selects_the_form(gen):
    x = binary(gen)
    exact, dm = small(), small(kl="deepmind")
    with torch.no_grad():
        assert not torch.allclose(exact.kl_memory(exact.write(x)), dm.kl_memory(dm.write(x)))


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


@pytest.mark.parametrize("name, steps", [("dkm", 50), pytest.param("kanerva-machine", 100, marks=pytest.mark.slow)])
def test_tiny_model_overfits_one_episode(gen, name, steps):
    model = small(name)
    x = binary(gen)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(steps):
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


def test_single_frame_episode_raises_bad_input(gen):
    with pytest.raises(BadInput, match="episode length"):
        small().write(binary(gen, t=1))


def test_image_size_the_coders_cannot_take_raises_bad_config():
    with pytest.raises(BadConfig, match="divisible by 4"):
        build_memory("dkm", (1, 10, 10), **SMALL)
