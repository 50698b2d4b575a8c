"""MAML-style write (papers/001): all writable parameters, one plain step size."""

import pytest
import torch

from engramlab.errors import BadConfig
from engramlab.rules.base import build_rule


def objective(fast, episode):
    """Two terms whose sum has gradient 2(w − episode) + 1 for every fast tensor."""
    sq = sum((t - episode).pow(2).flatten(1).sum(1) for t in fast.values())
    return torch.stack([sq, sum(t.flatten(1).sum(1) for t in fast.values())], 1)


def test_one_step_is_theta_minus_lambda_times_the_summed_gradient(gen):
    fast = {"memory.weight": torch.randn((3, 4), generator=gen)}
    episode = torch.randn((3, 4), generator=gen)
    rule = build_rule("maml", lr=0.25)
    new = rule(fast, episode, objective)
    expected = fast["memory.weight"] - 0.25 * (2 * (fast["memory.weight"] - episode) + 1)
    torch.testing.assert_close(new["memory.weight"], expected)


def test_step_size_is_one_meta_learned_scalar(gen):
    rule = build_rule("maml", lr=0.1, steps=2)
    assert [n for n, _ in rule.named_parameters()] == ["lr"] and rule.lr.dim() == 0
    fast = {"w": torch.randn((3, 4), generator=gen)}
    new = rule(fast, torch.zeros(3, 4), objective)
    new["w"].sum().backward()
    assert rule.lr.grad is not None and rule.lr.grad != 0


def test_fixed_step_size_is_not_a_parameter():
    assert list(build_rule("maml", learn_lr=False).parameters()) == []


def test_first_order_drops_the_inner_graph(gen):
    theta = torch.randn((1, 4), generator=gen, requires_grad=True)
    episode = torch.zeros(1, 4)
    grads = []
    for first_order in (False, True):
        rule = build_rule("maml", lr=0.1, first_order=first_order, learn_lr=False)
        new = rule({"w": theta}, episode, objective)
        (g,) = torch.autograd.grad(new["w"].sum(), theta)
        grads.append(g)
    torch.testing.assert_close(grads[1], torch.ones(1, 4))  # identity: d θ'/d θ with the gradient held fixed
    torch.testing.assert_close(grads[0], torch.full((1, 4), 1 - 0.1 * 2))  # (1 − 2λ): through the gradient


def test_non_positive_step_size_is_a_config_error():
    with pytest.raises(BadConfig):
        build_rule("maml", lr=0.0)
