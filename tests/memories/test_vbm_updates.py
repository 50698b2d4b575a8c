"""Closed-form VB updates of VBM (App. C.2-C.5): each step is the exact maximiser of the ELBO over its factor."""

import numpy as np
import pytest
import torch
from sklearn.cluster import kmeans_plusplus

from engramlab.errors import BadInput
from engramlab.memories.vbm.updates import (
    CatWrite,
    MixtureWrite,
    cat_address_step,
    cat_elbo,
    cat_memory_step,
    kmeans_pp,
    mixture_elbo,
    tree_elbo,
    vb_cat_write,
    vb_mixture_write,
    vb_shifted_write,
    vb_tree_write,
)
from engramlab.nn.linear_gaussian import batch_write

D = torch.float64


def _codes(gen, b=2, t=16, c=6):
    centres = 3 * torch.randn(b, 3, c, generator=gen, dtype=D)
    pick = torch.randint(0, 3, (b, t), generator=gen)
    return centres.gather(1, pick.unsqueeze(-1).expand(-1, -1, c)) + 0.5 * torch.randn(b, t, c, generator=gen, dtype=D)


def _max_grad(value, tensors):
    return max(g.abs().max().item() for g in torch.autograd.grad(value, tensors))


@pytest.mark.parametrize("noise", [0.4, 1.0, 2.0])
def test_categorical_steps_zero_the_gradient_of_their_factor(gen, noise):
    z = _codes(gen)
    k = 4
    r0, u0 = torch.zeros(k, 6, dtype=D), torch.eye(k, dtype=D)
    r, u = z[:, :k].clone(), 0.7 * torch.eye(k, dtype=D).expand(2, k, k)
    probs = cat_address_step(z, r, u, noise)
    logits = probs.log().clone().requires_grad_()
    value = cat_elbo(z, CatWrite(r, u, torch.softmax(logits, -1)), r0, u0, noise)["elbo"].sum()
    assert _max_grad(value, [logits]) < 1e-9
    r2, u2 = cat_memory_step(z, probs, r0.expand(2, k, 6), u0.expand(2, k, k), noise)
    r_, u_ = r2.clone().requires_grad_(), u2.clone().requires_grad_()
    assert _max_grad(cat_elbo(z, CatWrite(r_, u_, probs), r0, u0, noise)["elbo"].sum(), [r_, u_]) < 1e-9


def test_categorical_write_never_decreases_the_elbo_and_needs_t_at_least_k(gen):
    z = _codes(gen)
    r0, u0 = torch.zeros(4, 6, dtype=D), torch.eye(4, dtype=D)
    values = [cat_elbo(z, vb_cat_write(z, r0, u0, 0.5, iters=i), r0, u0, 0.5)["elbo"].sum().item() for i in range(1, 8)]
    assert all(b >= a - 1e-9 for a, b in zip(values, values[1:]))
    with pytest.raises(BadInput, match="T >= K"):
        vb_cat_write(z[:, :3], r0, u0)


def _mixture_setup(gen, h=3, k=2, c=6):
    z = _codes(gen, c=c)
    r0 = 0.5 * torch.randn(h, k, c, generator=gen, dtype=D)
    return z, r0, torch.eye(k, dtype=D), torch.zeros(h, c, dtype=D), 4.0


@pytest.mark.parametrize("noise", [0.5, 1.0, 1.7])
def test_mixture_write_is_a_stationary_point_of_the_elbo(gen, noise):
    """After convergence the gradient of the exact ELBO w.r.t. every variational parameter is ~0 (App. C.4)."""
    z, r0, u0, mb0, vb0 = _mixture_setup(gen)
    q = vb_mixture_write(z, r0, u0, mb0, vb0, 3, noise, iters=300, generator=gen)
    params = {f: getattr(q, f).clone().requires_grad_() for f in ("mean", "cov", "w_mean", "w_cov", "b_mean", "b_var")}
    logits = q.resp.log().clone().requires_grad_()
    q2 = MixtureWrite(**params, resp=torch.softmax(logits, -1))
    value = mixture_elbo(z, q2, r0, u0, mb0, vb0, noise)["elbo"].sum()
    assert _max_grad(value, [*params.values(), logits]) < 1e-5


def test_mixture_write_never_decreases_the_elbo(gen):
    z, r0, u0, mb0, vb0 = _mixture_setup(gen)
    values = []
    for iters in range(1, 12):
        q = vb_mixture_write(z, r0, u0, mb0, vb0, 3, 0.8, iters, generator=torch.Generator().manual_seed(1))
        values.append(mixture_elbo(z, q, r0, u0, mb0, vb0, 0.8)["elbo"].sum().item())
    assert all(b >= a - 1e-8 for a, b in zip(values, values[1:]))


def test_mixture_write_beats_gradient_ascent_from_the_same_start(gen):
    z, r0, u0, mb0, vb0 = _mixture_setup(gen, h=2)
    z = z[:1]
    init = vb_mixture_write(z, r0[:2], u0, mb0[:2], vb0, 2, 1.0, iters=1, generator=torch.Generator().manual_seed(2))
    vb = vb_mixture_write(z, r0[:2], u0, mb0[:2], vb0, 2, 1.0, iters=100, init_b=init.b_mean)
    vb_value = mixture_elbo(z, vb, r0[:2], u0, mb0[:2], vb0)["elbo"].item()
    k = 2
    p = {
        "mean": init.mean.clone().requires_grad_(),
        "lu": torch.linalg.cholesky(init.cov).clone().requires_grad_(),
        "w_mean": init.w_mean.clone().requires_grad_(),
        "lw": torch.linalg.cholesky(init.w_cov).clone().requires_grad_(),
        "b_mean": init.b_mean.clone().requires_grad_(),
        "log_bv": init.b_var.log().clone().requires_grad_(),
        "logits": init.resp.log().clone().requires_grad_(),
    }
    opt = torch.optim.Adam(p.values(), lr=0.02)
    eye = 1e-9 * torch.eye(k, dtype=D)
    for _ in range(400):
        opt.zero_grad()
        q = MixtureWrite(p["mean"], p["lu"].tril() @ p["lu"].tril().mT + eye, p["w_mean"],
                         p["lw"].tril() @ p["lw"].tril().mT + eye, p["b_mean"], p["log_bv"].exp(),
                         torch.softmax(p["logits"], -1))  # fmt: skip
        loss = -mixture_elbo(z, q, r0[:2], u0, mb0[:2], vb0)["elbo"].sum()
        loss.backward()
        opt.step()
    assert vb_value >= -loss.item() - 1e-6


def test_one_component_with_fixed_addressing_is_exact_bayesian_linear_regression(gen):
    """H = 1, b pinned at 0 (tiny prior variance), q(w) a point mass: the q(M) update is the BLR posterior."""
    from engramlab.nn.linear_gaussian import gauss_memory_step

    z = _codes(gen)
    w = torch.randn(2, 16, 3, generator=gen, dtype=D)
    r0, u0 = torch.randn(2, 3, 6, generator=gen, dtype=D), torch.eye(3, dtype=D).expand(2, 3, 3)
    r, u = gauss_memory_step(z, w, torch.zeros(2, 3, 3, dtype=D), r0, u0, 0.5, resp=torch.ones(2, 16, dtype=D))
    rb, ub = batch_write(r0, u0, w, z, 0.5)
    assert torch.allclose(r, rb) and torch.allclose(u, ub)


def test_shifted_write_learns_the_mean_shift(gen):
    c = 5
    shift = torch.tensor([3.0, -2.0, 1.0, 0.0, 4.0], dtype=D)
    z = 0.3 * torch.randn(1, 200, c, generator=gen, dtype=D) + shift
    q = vb_shifted_write(z, 0.1 * torch.randn(1, 2, c, generator=gen, dtype=D), torch.eye(2, dtype=D),
                         torch.zeros(1, c, dtype=D), 100.0, noise_var=0.1, iters=30)  # fmt: skip
    assert torch.allclose(q.b_mean[0, 0], shift, atol=0.1)


def test_tree_write_equals_independent_mixtures_on_the_code_chunks(gen):
    z = _codes(gen, c=6)
    g, h, k = 2, 2, 2
    r0 = 0.5 * torch.randn(g, h, k, 3, generator=gen, dtype=D)
    mb0 = torch.zeros(g, h, 3, dtype=D)
    u0 = torch.eye(k, dtype=D)
    q = vb_tree_write(z, r0, u0, mb0, 4.0, h, g, 1.0, iters=5, generator=torch.Generator().manual_seed(3))
    total = tree_elbo(z, q, r0, u0, mb0, 4.0, g)["elbo"]
    for gi in range(g):
        chunk = z[..., 3 * gi : 3 * gi + 3]
        single = vb_mixture_write(chunk, r0[gi], u0, mb0[gi], 4.0, h, 1.0, iters=5,
                                  init_b=_first_centres(z, g, h, gi))  # fmt: skip
        assert torch.allclose(single.mean, q.mean.reshape(2, g, h, k, 3)[:, gi])
    assert total.shape == (2,)


def _first_centres(z, g, h, gi):
    b, t, c = z.shape
    chunks = z.reshape(b, t, g, c // g).permute(0, 2, 1, 3).reshape(b * g, t, c // g)
    centres, _ = kmeans_pp(chunks, h, torch.Generator().manual_seed(3))
    return centres.reshape(b, g, h, c // g)[:, gi]


def test_kmeans_pp_matches_sklearn_seeding_statistics(gen):
    """Mean potential (Σ min squared distance to the seeds) over many seedings equals sklearn's kmeans_plusplus
    with one local trial (the plain algorithm), within Monte Carlo error."""
    x = np.random.default_rng(0).normal(size=(40, 2)) * np.array([1.0, 3.0])
    x[:10] += 8.0
    h, runs = 3, 1000

    def potential(centres):
        return ((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1).sum()

    ref = np.array([potential(kmeans_plusplus(x, h, random_state=s, n_local_trials=1)[0]) for s in range(runs)])
    codes = torch.tensor(x).expand(runs, -1, -1)
    centres, idx = kmeans_pp(codes, h, gen)
    ours = ((codes.unsqueeze(2) - centres.unsqueeze(1)) ** 2).sum(-1).min(-1).values.sum(-1).numpy()
    se = np.sqrt(ref.var() / runs + ours.var() / runs)
    assert abs(ours.mean() - ref.mean()) < 4 * se
    assert all(len(set(row)) == h for row in idx.tolist())  # distinct seeds


def test_bad_inputs_raise(gen):
    z, r0, u0, mb0, vb0 = _mixture_setup(gen)
    with pytest.raises(BadInput, match="NaN"):
        vb_mixture_write(z * float("nan"), r0, u0, mb0, vb0, 3)
    with pytest.raises(BadInput, match="positive"):
        vb_mixture_write(z, r0, u0, mb0, 0.0, 3)
    with pytest.raises(BadInput, match="k-means"):
        kmeans_pp(z[:, :2], 3)
    with pytest.raises(BadInput, match="divisible"):
        vb_tree_write(z, r0, u0, mb0, vb0, 3, groups=4)
