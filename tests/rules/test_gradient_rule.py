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
