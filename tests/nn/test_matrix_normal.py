"""Matrix-normal KL, sampling and log-density (VBM App. D) against dense multivariate normals and Monte Carlo."""

import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from engramlab.errors import NumericalError
from engramlab.nn.matrix_normal import MatrixNormal, cholesky, matrix_normal_kl, matrix_normal_log_prob, rsample


def _spd(n, gen, batch=()):
    a = torch.randn(*batch, n, n, generator=gen, dtype=torch.float64)
    return a @ a.transpose(-1, -2) / n + 0.5 * torch.eye(n, dtype=torch.float64)


def _vec(m):  # column-stacking vec of (..., K, C)
    return m.transpose(-1, -2).reshape(*m.shape[:-2], -1)


def _dense(mean, u, v):
    return MultivariateNormal(_vec(mean), covariance_matrix=torch.kron(v, u))


def test_kl_equals_dense_multivariate_normal_kl_on_vec(gen):
    k, c = 3, 4
    rq, rp = (
        torch.randn(k, c, generator=gen, dtype=torch.float64),
        torch.randn(k, c, generator=gen, dtype=torch.float64),
    )
    uq, up, vq, vp = _spd(k, gen), _spd(k, gen), _spd(c, gen), _spd(c, gen)
    expected = kl_divergence(_dense(rq, uq, vq), _dense(rp, up, vp))
    assert matrix_normal_kl(rq, uq, rp, up, vq, vp).item() == pytest.approx(expected.item(), rel=1e-10)
    eye = torch.eye(c, dtype=torch.float64)
    expected_i = kl_divergence(_dense(rq, uq, eye), _dense(rp, up, eye))
    assert matrix_normal_kl(rq, uq, rp, up).item() == pytest.approx(expected_i.item(), rel=1e-10)


def test_kl_of_a_distribution_with_itself_is_zero(gen):
    r, u = torch.randn(2, 5, 3, generator=gen), _spd(5, gen, (2,)).float()
    assert torch.allclose(matrix_normal_kl(r, u, r, u), torch.zeros(2), atol=1e-4)


def test_kl_matches_monte_carlo(gen):
    k, c = 3, 2
    q = MatrixNormal(torch.randn(k, c, generator=gen, dtype=torch.float64), _spd(k, gen))
    p = MatrixNormal(torch.zeros(k, c, dtype=torch.float64), 2.0 * torch.eye(k, dtype=torch.float64))
    m = q.rsample((200_000,), generator=gen)
    mc = (q.log_prob(m) - p.log_prob(m)).mean()
    assert q.kl(p).item() == pytest.approx(mc.item(), abs=0.02)


def test_rsample_has_the_matrix_normal_moments(gen):
    k, c = 3, 2
    r, u, v = torch.randn(k, c, generator=gen, dtype=torch.float64), _spd(k, gen), _spd(c, gen)
    m = rsample(r, u, v, (100_000,), generator=gen)
    assert torch.allclose(m.mean(0), r, atol=0.03)
    vecs = _vec(m)
    cov = torch.cov(vecs.T)
    assert torch.allclose(cov, torch.kron(v, u), atol=0.05)


def test_rsample_is_differentiable_in_mean_and_covariance(gen):
    r = torch.randn(3, 2, requires_grad=True)
    a = torch.randn(3, 3, requires_grad=True)
    u = a @ a.T + torch.eye(3)
    rsample(r, u, generator=gen).sum().backward()
    assert r.grad is not None and a.grad is not None and torch.isfinite(a.grad).all()


def test_log_prob_equals_dense_multivariate_normal(gen):
    k, c = 4, 3
    r, u, v = torch.randn(k, c, generator=gen, dtype=torch.float64), _spd(k, gen), _spd(c, gen)
    x = torch.randn(5, k, c, generator=gen, dtype=torch.float64)
    expected = _dense(r, u, v).log_prob(_vec(x))
    assert torch.allclose(matrix_normal_log_prob(x, r, u, v), expected)
    assert torch.allclose(
        MatrixNormal(r, u).log_prob(x), _dense(r, u, torch.eye(c, dtype=torch.float64)).log_prob(_vec(x))
    )


def test_entropy_equals_dense_entropy(gen):
    r, u, v = torch.randn(3, 2, generator=gen, dtype=torch.float64), _spd(3, gen), _spd(2, gen)
    assert MatrixNormal(r, u, v).entropy().item() == pytest.approx(_dense(r, u, v).entropy().item())


def test_non_positive_definite_covariance_raises_numerical_error():
    bad = torch.tensor([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(NumericalError, match="not positive definite"):
        cholesky(bad, "U")
    with pytest.raises(NumericalError):
        matrix_normal_kl(torch.zeros(2, 3), bad, torch.zeros(2, 3), torch.eye(2))
    with pytest.raises(NumericalError, match="non-finite"):
        cholesky(torch.full((2, 2), float("nan")))
