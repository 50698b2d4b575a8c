"""MPLP protocol (paper 004, eqs. 5-12): a hand-set rule is SGD; learned rules are batched and validated."""

import pytest
import torch

from engramlab.errors import BadInput, NumericalError
from engramlab.rules.mplp.protocol import (
    MPLP,
    GRULearner,
    MLPLearner,
    Standardizer,
    _dense,
    hand_set_sgd,
    init_params,
    net_forward,
    per_example_loss,
)


def _sgd_reference(params, x, y, lr, activation, loss):
    ps = [p.clone().requires_grad_(True) for p in params]
    out, _, _ = net_forward(ps, x, activation)
    total = per_example_loss(out, y, loss).mean(1).sum()  # each task's mean loss; tasks independent
    grads = torch.autograd.grad(total, ps)
    return [p - lr * g for p, g in zip(params, grads)]


@pytest.mark.parametrize("sizes", [(3, 2), (4, 5, 3)])
def test_hand_set_rule_reproduces_sgd_on_linear_and_relu_layers(sizes, gen):
    params = init_params(sizes, batch=4, generator=gen)
    x = torch.randn(4, 10, sizes[0], generator=gen)
    y = torch.randn(4, 10, sizes[-1], generator=gen)
    rule = hand_set_sgd(sizes, lr=0.1, activation="relu")
    state = rule.init_state(params)
    ref = params
    for _ in range(3):
        params, state, _ = rule.step(params, state, x, y, "relu", "mse")
        ref = _sgd_reference(ref, x, y, 0.1, "relu", "mse")
        for p, r in zip(params, ref):
            torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_hand_set_rule_reproduces_sgd_with_softmax_cross_entropy(gen):
    sizes = (6, 4, 3)
    params = init_params(sizes, batch=2, generator=gen)
    x = torch.randn(2, 8, 6, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 8), generator=gen), 3).float()
    rule = hand_set_sgd(sizes, lr=0.5, activation="sigmoid", loss="ce")
    new, _, _ = rule.step(params, rule.init_state(params), x, y, "sigmoid", "ce")
    for p, r in zip(new, _sgd_reference(params, x, y, 0.5, "sigmoid", "ce")):
        torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("learner", ["gru", "mlp"])
def test_learned_rule_treats_tasks_independently(learner, gen):
    sizes = (1, 5, 1)
    rule = MPLP(sizes, message_size=3, learner=learner, hidden=6)
    params = init_params(sizes, batch=3, generator=gen)
    x, y = torch.randn(3, 4, 1, generator=gen), torch.randn(3, 4, 1, generator=gen)
    new, state, _ = rule.step(params, rule.init_state(params), x, y, "relu", "mse")
    one, _, _ = rule.step(
        [p[1:2] for p in params], rule.init_state([p[1:2] for p in params]), x[1:2], y[1:2], "relu", "mse"
    )
    for p, q in zip(new, one):
        torch.testing.assert_close(p[1:2], q, rtol=1e-5, atol=1e-6)
    assert all(not torch.equal(p, q) for p, q in zip(new[::2], params[::2]))


def test_calibration_freezes_statistics_and_centres_updates(gen):
    sizes = (2, 4, 1)
    rule = MPLP(sizes, message_size=2, learner="mlp")
    params = init_params(sizes, batch=5, generator=gen)
    x, y = torch.randn(5, 6, 2, generator=gen), torch.randn(5, 6, 1, generator=gen)
    with rule.calibrating():
        new, _, _ = rule.step(params, rule.init_state(params), x, y, "relu", "mse")
    count = rule.w_std[0].count.clone()
    rule.step(params, rule.init_state(params), x, y, "relu", "mse")
    assert torch.equal(rule.w_std[0].count, count) and count > 0
    new, _, _ = rule.step(params, rule.init_state(params), x, y, "relu", "mse")
    dw = new[0] - params[0]  # centred on the calibration mean: same batch -> mean update ≈ 0
    assert dw.mean().abs() < 1e-4 * max(1.0, dw.abs().max().item()) + 1e-6


def test_sharing_across_layers_uses_one_weight_learner():
    rule = MPLP((3, 4, 4, 2), sharing="kind")
    assert rule.w_learners[0] is rule.w_learners[2] and rule.w_std[0] is not rule.w_std[1]
    everything = MPLP((3, 4, 4, 2), sharing="all")
    assert everything.w_std[0] is everything.w_std[1] and everything.w_scale[0] is everything.w_scale[2]
    per_layer = MPLP((3, 4, 4, 2))
    assert per_layer.w_learners[0] is not per_layer.w_learners[1]


def test_wrong_depth_for_per_layer_sharing_is_bad_input(gen):
    rule = MPLP((2, 4, 1), sharing="layer")
    with pytest.raises(BadInput, match="layers"):
        rule.init_state(init_params((2, 4, 4, 1), 1, gen))
    deep = MPLP((2, 4, 1), sharing="all")
    params = init_params((2, 4, 4, 1), 2, gen)
    new, _, _ = deep.step(params, deep.init_state(params), torch.randn(2, 3, 2), torch.randn(2, 3, 1), "relu", "mse")
    assert [p.shape for p in new] == [p.shape for p in params]


def test_mismatched_task_dimensions_are_bad_input(gen):
    rule = MPLP((2, 4, 1), learner="mlp")
    params = init_params((2, 4, 1), 2, gen)
    with pytest.raises(BadInput, match="inputs"):
        rule.step(params, rule.init_state(params), torch.randn(2, 3, 5), torch.randn(2, 3, 1), "relu", "mse")
    with pytest.raises(BadInput, match="targets"):
        rule.step(params, rule.init_state(params), torch.randn(2, 3, 2), torch.randn(2, 3, 2), "relu", "mse")


def test_non_finite_messages_raise_numerical_error(gen):
    rule = hand_set_sgd((2, 3, 1), lr=0.1)
    params = init_params((2, 3, 1), 1, gen)
    y = torch.full((1, 2, 1), float("nan"))
    with pytest.raises(NumericalError):
        rule.step(params, rule.init_state(params), torch.randn(1, 2, 2), y, "relu", "mse")


def _blocks(gen, b=2, n=3, n_in=4, n_out=5, m=3):
    """Weight-node feature blocks [m_j, w_ij, x_i] as MPLP.step builds them (broadcastable, not expanded)."""
    return [
        torch.randn(b, n, 1, n_out, m, generator=gen, dtype=torch.double),
        torch.randn(b, 1, n_in, n_out, 1, generator=gen, dtype=torch.double),
        torch.randn(b, n, n_in, 1, 1, generator=gen, dtype=torch.double),
    ]


def _cat(parts):
    shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
    return torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1)


@pytest.mark.parametrize("learner", ["gru", "mlp"])
def test_separable_learner_equals_the_learner_on_concatenated_features_with_gradients(learner, gen):
    torch.manual_seed(0)
    net = (GRULearner(5, 4, hidden=6) if learner == "gru" else MLPLearner(5, 4)).double()
    parts = [p.requires_grad_(True) for p in _blocks(gen)]
    state = torch.randn(2, 4, 5, 6, generator=gen, dtype=torch.double) if learner == "gru" else None
    fast, fast_state = net.forward_parts(parts, state)
    ref, ref_state = net(_cat(parts), state)
    torch.testing.assert_close(fast, ref)
    if learner == "gru":
        torch.testing.assert_close(fast_state, ref_state)
    weights = list(net.parameters()) + parts
    g_fast = torch.autograd.grad((fast * torch.arange(4.0, dtype=fast.dtype)).sum(), weights)
    g_ref = torch.autograd.grad((ref * torch.arange(4.0, dtype=ref.dtype)).sum(), weights)
    for a, b in zip(g_fast, g_ref):
        torch.testing.assert_close(a, b)


def test_standardizer_on_blocks_gathers_the_statistics_of_the_concatenated_features(gen):
    parts = _blocks(gen)
    blocks, whole = Standardizer(5).double(), Standardizer(5).double()
    blocks.calibrating = whole.calibrating = True
    out_blocks = blocks.forward_parts(parts)
    out_whole = whole(_cat(parts))
    for name in ("total", "total_sq", "count"):
        torch.testing.assert_close(getattr(blocks, name), getattr(whole, name))
    torch.testing.assert_close(_cat(out_blocks), out_whole)


@pytest.mark.parametrize("shape", [(7, 80), (40, 7)])
def test_dense_layer_matches_linear_and_its_gradients(shape, gen):
    n_in, n_out = shape
    lin = torch.nn.Linear(n_in, n_out).double()
    x = torch.randn(3, 5, n_in, generator=gen, dtype=torch.double, requires_grad=True)
    ours, ref = _dense(x, lin.weight, lin.bias), lin(x)
    torch.testing.assert_close(ours, ref)
    g = torch.randn(ours.shape, generator=gen, dtype=torch.double)
    for a, b in zip(torch.autograd.grad(ours, [x, lin.weight], g), torch.autograd.grad(ref, [x, lin.weight], g)):
        torch.testing.assert_close(a, b)


def _sgd_per_layer(params, x, y, lrs, activation, loss):
    ps = [p.clone().requires_grad_(True) for p in params]
    out, _, _ = net_forward(ps, x, activation)
    grads = torch.autograd.grad(per_example_loss(out, y, loss).mean(1).sum(), ps)
    return [p - lrs[i // 2] * g for i, (p, g) in enumerate(zip(params, grads))]


@pytest.mark.parametrize("learned", [True, False])
def test_residual_rule_starts_as_sgd_with_per_layer_rates(learned, gen):
    """Issue 14: at initialisation (gains 0) the residual form is exactly minibatch SGD, rate per layer."""
    sizes, lrs = (6, 5, 3), [2.0, 0.5]
    rule = MPLP(sizes, message_size=3, hidden=5, sharing="kind", residual=True, residual_lr=lrs, learned=learned)
    params = init_params(sizes, batch=2, generator=gen, scheme="xavier")
    x = torch.rand(2, 8, 6, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 3, (2, 8), generator=gen), 3).float()
    with rule.calibrating():  # calibration runs the learners with the gains switched on
        rule.step(params, rule.init_state(params), x, y, "sigmoid", "ce")
    state, ref = rule.init_state(params), params
    for _ in range(3):
        params, state, _ = rule.step(params, state, x, y, "sigmoid", "ce")
        ref = _sgd_per_layer(ref, x, y, lrs, "sigmoid", "ce")
        for p, r in zip(params, ref):
            torch.testing.assert_close(p, r, rtol=1e-5, atol=1e-6)


def test_residual_rule_learns_corrections_through_its_gains(gen):
    sizes = (4, 5, 2)
    rule = MPLP(sizes, message_size=2, hidden=4, residual=True)
    params = init_params(sizes, batch=2, generator=gen)
    x, y = torch.randn(2, 3, 4, generator=gen), torch.randn(2, 3, 2, generator=gen)
    new, _, _ = rule.step(params, rule.init_state(params), x, y, "relu", "mse")
    grads = torch.autograd.grad(sum(p.square().sum() for p in new), [rule.gain_w, rule.gain_wmsg, rule.log_lr])
    assert all(g.abs().sum() > 0 for g in grads)  # the gains get a meta-gradient although they start at 0


def test_fast_and_plain_tanh_paths_agree_on_a_step_and_its_meta_gradient(gen):
    """The fast path (tanh as 2σ(2z) − 1) computes the same updates and meta-gradients as torch.tanh, to 1e-6."""
    sizes = (12, 6, 4)
    torch.manual_seed(0)
    fast = MPLP(sizes, message_size=3, hidden=5, sharing="kind", fast=True)
    plain = MPLP(sizes, message_size=3, hidden=5, sharing="kind", fast=False)
    plain.load_state_dict(fast.state_dict())
    params = init_params(sizes, batch=2, generator=gen, scheme="xavier")
    x = torch.rand(2, 8, 12, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 8), generator=gen), 4).float()
    results = []
    for rule in (fast, plain):
        ps, state = params, rule.init_state(params)
        for _ in range(3):
            ps, state, _ = rule.step(ps, state, x, y, "sigmoid", "ce")
        out, _, _ = net_forward(ps, x, "sigmoid")
        meta = per_example_loss(out, y, "ce").mean()
        results.append((ps, torch.autograd.grad(meta, list(rule.parameters()), allow_unused=True)))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    for a, b in zip(results[0][1], results[1][1]):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
