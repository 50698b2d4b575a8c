"""EBMM (papers/000): architectures, write, read, meta-training, bad input."""

import numpy as np
import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput, NumericalError
from engramlab.memories.base import build_memory, memory_names
from engramlab.memories.ebmm.energy import GatedRNNEnergy, ResNetConvEnergy, ResNetFCEnergy
from engramlab.memories.ebmm.ssim import ssim
from engramlab.memories.ebmm.write import writing_terms

SMALL = dict(hidden_size=32, write_lr=0.05, write_steps=2, read_steps=3, read_gamma=0.5)


def strings(gen, b=3, t=4, d=16):
    return torch.randint(0, 2, (b, t, d), generator=gen).float() * 2 - 1


def flipped(x, gen, p=0.2):
    flips = torch.rand(x.shape, generator=gen) < p
    return torch.where(flips, -x, x)


def perturbed_fast(net, b, gen):
    fast = net.initial_fast(b)
    return {n: (t + 0.1 * torch.randn(t.shape, generator=gen)).detach() for n, t in fast.items()}


def test_all_four_architectures_are_registered():
    assert {"ebmm-strings", "ebmm-fc", "ebmm-conv", "ebmm-imagenet"} <= set(memory_names())


def test_binary_string_memory_is_sized_like_a_128_unit_hopfield_net():
    mem = build_memory("ebmm-strings", pattern_shape=(128,))
    assert mem.memory_floats() == 8127
    assert 128 * 127 // 2 == 8128


def test_only_modules_named_memory_are_writable():
    mem = build_memory("ebmm-conv", pattern_shape=(1, 32, 32))
    names = mem.energy_net.memory_names()
    assert names == ["block3.memory.weight", "block3.memory.bias", "block4.memory.weight", "block4.memory.bias"]
    assert mem.memory_floats() == 2 * (8 * 64 * 9 + 8)


def test_memory_bias_init_sets_only_the_writable_biases():
    mem = build_memory("ebmm-conv", pattern_shape=(1, 32, 32), memory_bias_init=2.0)
    for name, param in mem.energy_net.named_parameters():
        if name.endswith("bias"):
            expected = 2.0 if name in mem.energy_net.memory_names() else 0.0
            assert torch.all(param == expected), name
    assert mem.memory_floats() == build_memory("ebmm-conv", pattern_shape=(1, 32, 32)).memory_floats()


def test_conv_memory_size_grows_with_dynamic_size():
    small = build_memory("ebmm-conv", pattern_shape=(1, 32, 32), dynamic_size=4, hidden_size=16)
    large = build_memory("ebmm-conv", pattern_shape=(1, 32, 32), dynamic_size=16, hidden_size=16)
    assert large.memory_floats() == 4 * small.memory_floats()


@pytest.mark.parametrize(
    "net,shape",
    [
        (lambda: GatedRNNEnergy(16, hidden_size=24, hops=3), (16,)),
        (lambda: ResNetFCEnergy(1, 16, channels=4, dynamic_size=8, hidden_size=16, embed_size=12), (1, 16, 16)),
        (lambda: ResNetConvEnergy(1, 16, channels=4, dynamic_size=2, hidden_size=8), (1, 16, 16)),
        (lambda: ResNetConvEnergy(1, 16, channels=4, dynamic_size=2, hidden_size=8, imagenet=True), (1, 16, 16)),
    ],
)
def test_batched_energy_equals_per_episode_loop(net, shape, gen):
    net = net()
    x = torch.rand((3, 2, *shape), generator=gen)
    fast = perturbed_fast(net, 3, gen)
    batched = net(x, fast)
    loop = torch.cat([net(x[b : b + 1], {n: t[b : b + 1] for n, t in fast.items()}) for b in range(3)])
    assert batched.shape == (3, 2)
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-5)


def test_batched_write_and_read_equal_per_episode_reference(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL).eval()
    x = strings(gen)
    q = flipped(x, gen)
    state = mem.write(x)
    read = mem.read(q, state)
    for b in range(3):
        one = mem.write(x[b : b + 1])
        for n in state.fast:
            torch.testing.assert_close(state.fast[n][b : b + 1], one.fast[n], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(read[b : b + 1], mem.read(q[b : b + 1], one), rtol=1e-5, atol=1e-5)


def test_gradient_of_writing_loss_matches_finite_differences(gen):
    """d/dθ of E + α‖∇ₓE‖² + β‖θ − θ̄‖² (double backward) against central differences in float64."""
    net = GatedRNNEnergy(6, hidden_size=8, hops=2).double()
    x = torch.rand((2, 3, 6), generator=gen, dtype=torch.float64) * 2 - 1
    anchor = {n: t.detach() for n, t in net.initial_fast(2).items()}
    fast = {
        n: (t + 0.05 * torch.randn(t.shape, generator=gen, dtype=torch.float64)).requires_grad_()
        for n, t in anchor.items()
    }

    def total(f):
        return writing_terms(net, f, anchor, x, alpha=0.7, beta=0.3).sum()

    grads = torch.autograd.grad(total(fast), list(fast.values()))
    eps = 1e-6
    for (name, value), grad in zip(fast.items(), grads):
        for idx in [(0, 0, 0), (1, 1, 5)] if value.dim() == 3 else [(0, 1), (1, 0)]:
            plus = {n: t.detach().clone() for n, t in fast.items()}
            minus = {n: t.detach().clone() for n, t in fast.items()}
            plus[name][idx] += eps
            minus[name][idx] -= eps
            fd = (total(plus) - total(minus)).detach() / (2 * eps)
            assert abs(float(fd) - float(grad[idx])) < 1e-6 * max(1.0, abs(float(fd)))


def test_gradient_term_is_differentiated_through_grad_x(gen):
    """The α term depends on θ only through ∇ₓE: its θ-gradient is nonzero (double backward ran)."""
    net = GatedRNNEnergy(6, hidden_size=8, hops=2)
    x = torch.rand((2, 3, 6), generator=gen) * 2 - 1
    anchor = {n: t.detach() for n, t in net.initial_fast(2).items()}
    fast = {n: t.clone().requires_grad_() for n, t in anchor.items()}
    terms = writing_terms(net, fast, anchor, x, alpha=1.0, beta=1.0)
    (g,) = torch.autograd.grad(terms[:, 1].sum(), [fast["memory.weight"]])
    assert g.abs().sum() > 0


def test_read_lowers_energy(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL).eval()
    x = strings(gen)
    q = flipped(x, gen)
    state = mem.write(x)
    before = mem.energy(q, state)
    after = mem.energy(mem.read(q, state), state)
    assert after.mean() < before.mean()


def test_read_stays_in_data_range(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **{**SMALL, "read_gamma": 50.0}).eval()
    x = strings(gen)
    read = mem.read(flipped(x, gen), mem.write(x))
    assert read.min() >= -1 and read.max() <= 1


def test_read_step_sizes_are_non_increasing():
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **{**SMALL, "read_steps": 6})
    with torch.no_grad():
        mem.reader.eta.normal_(0, 3)
    gamma, psi = mem.reader.schedule()
    assert (gamma[1:] <= gamma[:-1]).all() and (psi[1:] <= psi[:-1]).all()


def test_fixed_step_sizes_are_not_meta_learned():
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL, learn_read_steps=False, learn_write_lr=False)
    names = [n for n, _ in mem.named_parameters()]
    assert not any(n.startswith(("reader.", "rule.")) for n in names)


def test_write_rates_start_at_1e_4_per_layer_and_term():
    mem = build_memory("ebmm-conv", pattern_shape=(1, 16, 16), hidden_size=8)
    rates = mem.rule.rates()
    assert rates.shape == (2, 3)
    torch.testing.assert_close(rates, torch.full((2, 3), 1e-4))


def test_meta_gradient_reaches_every_parameter_in_second_and_first_order(gen):
    x = strings(gen)
    batch = EpisodeBatch(patterns=x, queries=flipped(x, gen), targets=x)
    for first_order in (False, True):
        mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL, first_order=first_order)
        loss, _ = mem.loss(batch)
        loss.backward()
        assert mem.rule.raw_lr.grad is not None and mem.rule.raw_lr.grad.abs().sum() > 0
        assert mem.reader.raw_gamma.grad is not None
        assert mem.energy_net.memory.weight.grad.abs().sum() > 0


def test_second_order_meta_gradient_differs_from_first_order(gen):
    x = strings(gen)
    batch = EpisodeBatch(patterns=x, queries=flipped(x, gen), targets=x)
    grads = []
    for first_order in (False, True):
        torch.manual_seed(0)
        mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL, first_order=first_order)
        mem.loss(batch)[0].backward()
        grads.append(mem.energy_net.static.weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def meta_train(mem, gen, steps, lr=3e-3, b=8, t=3, d=16):
    opt = torch.optim.Adam(mem.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        x = strings(gen, b, t, d)
        loss, logs = mem.loss(EpisodeBatch(patterns=x, queries=flipped(x, gen, 0.15), targets=x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(logs["sq_err"]))
    return losses


def test_tiny_model_meta_trains_and_stored_patterns_end_with_lower_energy_than_queries(gen):
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **{**SMALL, "write_lr": 0.1, "read_gamma": 1.0})
    losses = meta_train(mem, gen, 70, lr=1e-2)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    mem.eval()
    x = strings(gen, 16, 3)
    state = mem.write(x)
    assert mem.energy(x, state).mean() < mem.energy(flipped(x, gen, 0.15), state).mean()


def test_maml_write_and_decoder_read_variants_learn(gen):
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **{**SMALL, "write_rule": "maml", "read": "decoder"})
    losses = meta_train(mem, gen, 40, lr=1e-2)
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])


def test_ssim_mse_loss_and_final_step_loss_run_on_images(gen):
    mem = build_memory(
        "ebmm-conv",
        pattern_shape=(1, 16, 16),
        hidden_size=8,
        channels=4,
        dynamic_size=2,
        write_steps=1,
        read_steps=2,
        loss="ssim+mse",
        loss_steps="final",
    )
    x = torch.rand((2, 2, 1, 16, 16), generator=gen)
    loss, _ = mem.loss(EpisodeBatch(patterns=x, queries=x.flip(-1), targets=x))
    loss.backward()
    assert torch.isfinite(loss)


def ssim_numpy(x, y, data_range=1.0, size=7, sigma=1.5):
    """Direct Wang et al. (2004) formula: Gaussian-weighted local statistics at every valid window."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    vals = []
    for i in range(x.shape[0] - size + 1):
        for j in range(x.shape[1] - size + 1):
            a, b = x[i : i + size, j : j + size], y[i : i + size, j : j + size]
            mx, my = (w * a).sum(), (w * b).sum()
            vx, vy = (w * (a - mx) ** 2).sum(), (w * (b - my) ** 2).sum()
            cov = (w * (a - mx) * (b - my)).sum()
            vals.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_wang_formula(gen):
    x = torch.rand((2, 1, 12, 12), generator=gen, dtype=torch.float64)
    y = (x + 0.2 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, y, window=7)
    for i in range(2):
        assert abs(float(ours[i]) - ssim_numpy(x[i, 0].numpy(), y[i, 0].numpy())) < 1e-10
    torch.testing.assert_close(ssim(x, x, window=7), torch.ones(2, dtype=torch.float64))


# -- bad input ----------------------------------------------------------------------------------
@pytest.fixture
def small():
    return build_memory("ebmm-strings", pattern_shape=(16,), **SMALL).eval()


def test_query_of_wrong_shape_is_rejected(small, gen):
    state = small.write(strings(gen))
    with pytest.raises(BadInput, match="shape"):
        small.read(torch.zeros(3, 2, 15), state)


def test_query_out_of_range_is_rejected(small, gen):
    state = small.write(strings(gen))
    with pytest.raises(BadInput, match="values must lie"):
        small.read(torch.full((3, 2, 16), 2.0), state)


def test_empty_episode_is_rejected(small):
    with pytest.raises(BadInput, match="empty"):
        small.write(torch.zeros(3, 0, 16))


@pytest.mark.parametrize("name", ["ebmm-conv", "ebmm-fc"])
def test_a_blank_image_in_an_episode_is_rejected_by_name_and_position(name):
    # GroupNorm of an all-zero image has variance 0 and the double-backward write gradient overflows
    # (it used to surface as "gradient ... is not finite"); a blank query still reads finitely.
    mem = build_memory(name, pattern_shape=(1, 16, 16), dynamic_size=2, channels=8, hidden_size=8).eval()
    x = torch.rand(2, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    x[1, 2] = 0
    with pytest.raises(NumericalError, match="episode 1, pattern 2 is an all-zero image"):
        mem.write(x)
    query = x[:, :2].clone()
    query[0, 0] = 0
    assert torch.isfinite(mem.read(query, mem.write(x[:, :2]))).all()


def test_mismatched_pattern_sizes_between_write_and_read_are_rejected(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL)
    x = strings(gen)
    with pytest.raises(BadInput, match="shape"):
        mem.loss(EpisodeBatch(patterns=x, queries=torch.zeros(3, 4, 8), targets=torch.zeros(3, 4, 8)))


def test_query_for_a_different_number_of_episodes_is_rejected(small, gen):
    state = small.write(strings(gen))
    with pytest.raises(BadInput, match="episodes"):
        small.read(strings(gen, b=2), state)


def test_non_finite_energy_raises_numerical_error(small, gen):
    with torch.no_grad():
        small.energy_net.energy.bias.fill_(float("nan"))
    with pytest.raises(NumericalError, match="not finite"):
        small.write(strings(gen))


def test_image_memory_needs_square_images():
    with pytest.raises(BadConfig, match="square"):
        build_memory("ebmm-conv", pattern_shape=(16, 16))


def test_writable_part_larger_than_its_layer_is_a_config_error():
    with pytest.raises(BadConfig, match="dynamic_size"):
        build_memory("ebmm-strings", pattern_shape=(128,), hidden_size=32)
    with pytest.raises(BadConfig, match="dynamic_size"):
        build_memory("ebmm-conv", pattern_shape=(1, 16, 16), channels=4, dynamic_size=16)


def test_unknown_read_is_a_config_error():
    with pytest.raises(BadConfig, match="read"):
        build_memory("ebmm-strings", pattern_shape=(16,), read="magic")


def test_summed_writing_loss_is_T_times_the_mean_for_the_pattern_terms(gen):
    net = GatedRNNEnergy(6, hidden_size=8, hops=2)
    x = torch.rand((2, 5, 6), generator=gen) * 2 - 1
    anchor = {n: t.detach() for n, t in net.initial_fast(2).items()}
    fast = {n: t + 0.1 for n, t in anchor.items()}
    mean = writing_terms(net, fast, anchor, x, alpha=0.7, beta=0.3)
    summed = writing_terms(net, fast, anchor, x, alpha=0.7, beta=0.3, reduction="sum")
    torch.testing.assert_close(summed[:, :2], 5 * mean[:, :2])
    torch.testing.assert_close(summed[:, 2], mean[:, 2])


def test_step_sizes_get_rate_lr_scale_times_the_meta_learning_rate(gen):
    from engramlab.training import TrainConfig, Trainer

    mem = build_memory("ebmm-strings", pattern_shape=(16,), **SMALL, rate_lr_scale=3.0)
    x = strings(gen)
    batch = EpisodeBatch(patterns=x, queries=flipped(x, gen), targets=x)

    class Source:
        def batch(self, step, rank=0):
            return batch

    trainer = Trainer(mem, Source(), TrainConfig(steps=1, lr=1e-3, tensorboard=False), progress=False)
    trainer.fit()
    lrs = {id(p): g["lr"] for g in trainer.optimizer.param_groups for p in g["params"]}
    assert lrs[id(mem.reader.raw_gamma)] == pytest.approx(3e-3) and lrs[id(mem.rule.raw_lr)] == pytest.approx(3e-3)
    assert lrs[id(mem.energy_net.memory.weight)] == pytest.approx(1e-3)


def test_unknown_write_reduction_is_a_config_error():
    with pytest.raises(BadConfig, match="write_reduction"):
        build_memory("ebmm-strings", pattern_shape=(16,), write_reduction="max")
