"""EBMM gradient write rule: per-layer, per-term softplus learning rates (papers/000, App. C)."""

import pytest
import torch

from engramlab.errors import BadConfig, NumericalError
from engramlab.rules.base import build_rule, rule_names

NAMES = ["a.memory.weight", "a.memory.bias", "b.memory.weight"]


def quadratic_objective(targets):
    """Two terms per episode: ‖w − target‖² and Σ w (so their gradients are known in closed form)."""

    def objective(fast, episode):
        sq = sum((fast[n] - targets[n]).pow(2).flatten(1).sum(1) for n in fast)
        lin = sum(fast[n].flatten(1).sum(1) for n in fast)
        return torch.stack([sq, lin], 1)

    return objective


def setup(gen, b=3):
    fast = {n: torch.randn((b, 2, 3) if n.endswith("weight") else (b, 2), generator=gen) for n in NAMES}
    targets = {n: torch.randn(t.shape, generator=gen) for n, t in fast.items()}
    return fast, targets


def test_gradient_rule_is_registered():
    assert {"gradient", "maml"} <= set(rule_names())


def test_rates_are_softplus_per_layer_and_term_initialised_at_1e_4():
    rule = build_rule("gradient", fast_names=NAMES, terms=3)
    assert rule.layers == ["a.memory", "b.memory"]
    torch.testing.assert_close(rule.rates(), torch.full((2, 3), 1e-4))


def test_one_step_equals_the_closed_form_update(gen):
    fast, targets = setup(gen)
    rule = build_rule("gradient", fast_names=NAMES, terms=2, lr_init=0.1)
    with torch.no_grad():
        rule.raw_lr.copy_(torch.tensor([[0.3, -1.0], [1.2, 0.0]]))
    rates = rule.rates().detach()
    new = rule(fast, None, quadratic_objective(targets))
    for n in NAMES:
        layer = 0 if n.startswith("a.") else 1
        expected = fast[n] - rates[layer, 0] * 2 * (fast[n] - targets[n]) - rates[layer, 1]
        torch.testing.assert_close(new[n], expected)


def test_steps_descend_the_objective(gen):
    fast, targets = setup(gen)
    objective = quadratic_objective(targets)
    rule = build_rule("gradient", fast_names=NAMES, steps=5, terms=2, lr_init=0.2)
    new = rule(fast, None, lambda f, e: objective(f, e)[:, :1].expand(-1, 2) * torch.tensor([1.0, 0.0]))
    assert (objective(new, None)[:, 0] < objective(fast, None)[:, 0]).all()


def test_rates_receive_a_meta_gradient_in_training(gen):
    fast, targets = setup(gen)
    rule = build_rule("gradient", fast_names=NAMES, terms=2, lr_init=0.1, steps=2)
    new = rule(fast, None, quadratic_objective(targets))
    sum(t.sum() for t in new.values()).backward()
    assert rule.raw_lr.grad is not None and rule.raw_lr.grad.abs().min() > 0


def test_eval_mode_returns_detached_parameters(gen):
    fast, targets = setup(gen)
    rule = build_rule("gradient", fast_names=NAMES, terms=2).eval()
    new = rule(fast, None, quadratic_objective(targets))
    assert all(t.grad_fn is None for t in new.values())


def test_non_finite_gradient_raises(gen):
    fast, targets = setup(gen)
    rule = build_rule("gradient", fast_names=NAMES, terms=2)

    def bad(f, e):
        return quadratic_objective(targets)(f, e) * float("nan")

    with pytest.raises(NumericalError, match="not finite"):
        rule(fast, None, bad)


def test_bad_arguments_are_config_errors():
    with pytest.raises(BadConfig):
        build_rule("gradient", fast_names=NAMES, steps=0)
    with pytest.raises(BadConfig):
        build_rule("gradient", fast_names=[], steps=1)


def test_one_pass_per_layer_equals_one_pass_per_term_with_meta_gradients(gen):
    fast, targets = setup(gen)

    def objective(f, e):  # three non-quadratic terms, two layers: the per-layer path is taken
        sq = sum((f[n] - targets[n]).pow(2).flatten(1).sum(1) for n in f)
        quartic = sum(f[n].pow(4).flatten(1).sum(1) for n in f)
        mixed = (f["a.memory.weight"].sum((1, 2)) * f["b.memory.weight"].sum((1, 2))).tanh()
        return torch.stack([sq, quartic, mixed], 1)

    rule = build_rule("gradient", fast_names=NAMES, steps=2, terms=3, lr_init=[0.05, 0.01, 0.2])
    leaves = {n: t.clone().requires_grad_(True) for n, t in fast.items()}
    outputs = {}
    for path in ("layer_steps", "term_steps"):
        rule.zero_grad()
        original = rule.layer_steps
        if path == "term_steps":
            rule.layer_steps = lambda terms, rates, f: rule.term_steps(terms, rates, f)
        new = rule(dict(leaves), None, objective)
        rule.layer_steps = original
        meta = sum(t.pow(2).sum() for t in new.values())
        grads = torch.autograd.grad(meta, [rule.raw_lr, *leaves.values()])
        outputs[path] = ([new[n].detach() for n in NAMES], grads)
    for a, b in zip(outputs["layer_steps"][0], outputs["term_steps"][0]):
        torch.testing.assert_close(a, b)
    for a, b in zip(outputs["layer_steps"][1], outputs["term_steps"][1]):
        torch.testing.assert_close(a, b)


def test_rates_can_start_at_one_value_per_term():
    rule = build_rule("gradient", fast_names=NAMES, terms=3, lr_init=[1.0, 0.5, 0.01])
    torch.testing.assert_close(rule.rates(), torch.tensor([[1.0, 0.5, 0.01]] * 2))
    with pytest.raises(BadConfig, match="one rate per term"):
        build_rule("gradient", fast_names=NAMES, terms=3, lr_init=[1.0, 0.5])
