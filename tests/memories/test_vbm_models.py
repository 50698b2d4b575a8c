"""VBM models on the shared coders: ELBO per frame, write/read/generate, resizing, bad input, learning."""

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import build_memory
from engramlab.nn.linear_gaussian import online_write

SHAPE = (1, 8, 8)
SMALL = {"code": 8, "rows": 4, "clusters": 2, "groups": 2, "iters": 3, "width": 8}
VBM = ["vbm-gauss", "vbm-cat", "vbm-shifted", "vbm-mixture", "vbm-tree"]
ALL = VBM + ["vbm-vae", "vbm-ns", "vbm-dkm"]


def _episode(gen, b=2, t=6):
    return (torch.rand(b, t, *SHAPE, generator=gen) > 0.5).float()


@pytest.mark.parametrize("name", ALL)
def test_loss_is_finite_and_trains_every_parameter_it_uses(name, gen):
    torch.manual_seed(0)
    model = build_memory(name, SHAPE, likelihood="bernoulli", **SMALL)
    loss, logs = model.loss(EpisodeBatch(patterns=_episode(gen)))
    loss.backward()
    assert torch.isfinite(loss) and "elbo_per_frame" in logs
    grads = [p.grad for p in model.encoder.net.parameters()] + [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL)
def test_write_read_generate_shapes(name, gen):
    model = build_memory(name, SHAPE, likelihood="gaussian", **SMALL).eval()
    x = _episode(gen)
    with torch.no_grad():
        state = model.write(x)
        assert model.read(x[:, :3], state).shape == (2, 3, *SHAPE)
        out = model.generate(state, 5, generator=gen)
    assert out.shape == (2, 5, *SHAPE) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", VBM)
def test_elbo_per_frame_is_the_episode_elbo_over_t_including_the_memory_kl(name, gen):
    model = build_memory(name, SHAPE, likelihood="bernoulli", **SMALL).eval()
    x = _episode(gen, t=6)
    terms = model.elbo_terms(x)
    assert torch.allclose(terms["elbo_per_frame"], terms["elbo"] / 6)
    assert (terms["kl_omega_per_frame"] > 0).all()


@pytest.mark.parametrize("name,key", [("vbm-gauss", "rows"), ("vbm-cat", "rows"), ("vbm-mixture", "clusters")])
def test_memory_can_be_resized_at_test_time(name, key, gen):
    model = build_memory(name, SHAPE, likelihood="bernoulli", **SMALL).eval()
    x = _episode(gen, t=8)
    with torch.no_grad():
        for size in (1, 3, 8):
            state = model.write(x, **{key: size})
            got = state.mean.shape[-2] if key == "rows" else state.mean.shape[2]
            assert got == size
            assert torch.isfinite(model.elbo_terms(x, **{key: size})["elbo"]).all()
            assert model.generate(state, 2).shape == (2, 2, *SHAPE)
    with pytest.raises(BadInput, match="at least one"):
        model.write(x, **{key: 0})


@pytest.mark.parametrize("name", ["vbm-gauss", "vbm-cat"])
def test_rows_beyond_episode_length_raise(name, gen):
    model = build_memory(name, SHAPE, **SMALL)
    with pytest.raises(BadInput, match="T >= K"):
        model.write(_episode(gen, t=3))


def test_bad_input_and_config_raise(gen):
    model = build_memory("vbm-gauss", SHAPE, **SMALL)
    x = _episode(gen)
    x[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(BadInput, match="NaN"):
        model.write(x)
    with pytest.raises(BadConfig):
        build_memory("vbm-gauss", SHAPE, noise_var=-1.0)
    with pytest.raises(BadConfig):
        build_memory("vbm-tree", SHAPE, code=9, groups=2)


def test_iterative_read_returns_one_image_per_step(gen):
    model = build_memory("vbm-mixture", SHAPE, **SMALL).eval()
    x = _episode(gen)
    with torch.no_grad():
        reads = model.iterative_read(x[:, :2], model.write(x), steps=3)
    assert len(reads) == 3 and all(r.shape == (2, 2, *SHAPE) for r in reads)


def test_stochastic_regulariser_changes_only_the_training_objective(gen):
    model = build_memory("vbm-gauss", SHAPE, stochastic_regulariser=True, likelihood="bernoulli", **SMALL)
    x = _episode(gen)
    torch.manual_seed(1)
    train_loss = model.loss(EpisodeBatch(patterns=x))[0]
    model.eval()
    torch.manual_seed(1)
    eval_loss = model.loss(EpisodeBatch(patterns=x))[0]
    assert torch.isfinite(train_loss) and train_loss.item() != eval_loss.item()


def test_tiny_vbm_overfits_a_fixed_batch(gen):
    torch.manual_seed(0)
    model = build_memory("vbm-gauss", SHAPE, likelihood="bernoulli", **SMALL)
    batch = EpisodeBatch(patterns=_episode(gen, t=6))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.0, 0.999))
    first = model.loss(batch)[0].item()
    for _ in range(30):
        opt.zero_grad()
        loss = model.loss(batch)[0]
        loss.backward()
        opt.step()
    assert loss.item() < first - 3.0


def test_dkm_baseline_writes_with_the_online_dkm_write(gen):
    model = build_memory("vbm-dkm", SHAPE, **SMALL).eval()
    x = _episode(gen)
    with torch.no_grad():
        state = model.write(x)
        mu, _ = model.encode(x)
        r0 = model.prior_mean.unsqueeze(0).expand(2, -1, -1)
        mean, cov, _ = online_write(r0, torch.eye(4).expand(2, 4, 4), mu, 1.0, "ridge", 1e-3)
    assert torch.allclose(state.mean, mean, atol=1e-5) and torch.allclose(state.cov, cov, atol=1e-5)


def test_neural_statistician_pools_over_the_set_not_the_features(gen):
    model = build_memory("vbm-ns", SHAPE, **SMALL).eval()
    x = _episode(gen, t=5)
    with torch.no_grad():
        a = model.write(x).mean
        b = model.write(x[:, torch.randperm(5, generator=gen)]).mean  # permutation of the set: same context
        y = x.clone()
        y[:, 0] = 1 - y[:, 0]
        c = model.write(y).mean  # one frame changed: a different context
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-5)


def test_presets_of_appendix_f_load():
    from engramlab.config import load_preset
    from engramlab.training.config import Experiment

    for v in ("gauss", "cat", "mixture", "tree"):
        exp = Experiment.from_dict(load_preset(f"vbm-{v}-cifar10"))
        assert exp.memory["code"] == 200 and exp.train.betas[0] == 0.0 and exp.data.episode_length == 64
