"""The "mplp" write rule: a learned per-synapse update rule driven by gradient messages (paper 004 + EBMM)."""

import pytest
import torch

from engramlab.errors import BadConfig, NumericalError
from engramlab.rules.base import build_rule


def _objective(fast, episode):
    x, y = episode[..., :4], episode[..., 4:]
    pred = torch.einsum("bnd,bdk->bnk", x, fast["memory.weight"]) + fast["memory.bias"].unsqueeze(1)
    return (pred - y).pow(2).mean((1, 2))


def _episodes(gen, b=6):
    x = torch.randn(b, 8, 4, generator=gen)
    w = torch.randn(b, 4, 3, generator=gen)
    return torch.cat([x, torch.einsum("bnd,bdk->bnk", x, w)], -1)


def _fast(b, gen):
    return {"memory.weight": 0.1 * torch.randn(b, 4, 3, generator=gen), "memory.bias": torch.zeros(b, 3)}


def test_mplp_is_a_registered_write_rule_that_keeps_keys_and_shapes(gen):
    rule = build_rule("mplp", fast_names=["memory.weight", "memory.bias"], steps=2)
    fast = _fast(3, gen)
    new = rule(fast, _episodes(gen, 3), _objective)
    assert {k: v.shape for k, v in new.items()} == {k: v.shape for k, v in fast.items()}
    assert not torch.equal(new["memory.weight"], fast["memory.weight"])


def test_write_rule_treats_episodes_independently(gen):
    rule = build_rule("mplp", fast_names=["memory.weight", "memory.bias"], steps=2).eval()
    fast, eps = _fast(4, gen), _episodes(gen, 4)
    full = rule(fast, eps, _objective)
    one = rule({k: v[2:3] for k, v in fast.items()}, eps[2:3], _objective)
    torch.testing.assert_close(full["memory.weight"][2:3], one["memory.weight"], rtol=1e-5, atol=1e-6)


def test_meta_training_the_write_rule_lowers_the_written_loss(gen):
    torch.manual_seed(0)
    rule = build_rule("mplp", fast_names=["memory.weight", "memory.bias"], steps=3, learner="mlp")
    opt = torch.optim.Adam(rule.parameters(), lr=5e-2)
    eps, fast = _episodes(gen, 16), _fast(16, gen)
    rule.eval()
    before = _objective(rule(fast, eps, _objective), eps).mean().item()
    rule.train()
    for _ in range(40):
        loss = _objective(rule(fast, eps, _objective), eps).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    rule.eval()
    after = _objective(rule(fast, eps, _objective), eps).mean().item()
    assert after < 0.8 * before


def test_wrong_terms_or_missing_tensors_are_bad_config_and_nan_messages_numerical_error(gen):
    rule = build_rule("mplp", fast_names=["memory.weight"], terms=2)
    with pytest.raises(BadConfig, match="terms"):
        rule(_fast(2, gen), _episodes(gen, 2), _objective)
    with pytest.raises(BadConfig, match="missing"):
        rule({"other": torch.zeros(2, 3)}, _episodes(gen, 2), _objective)
    one = build_rule("mplp", fast_names=["memory.weight"])
    bad = _episodes(gen, 2)
    bad[0, 0, 5] = float("nan")
    with pytest.raises(NumericalError):
        one(_fast(2, gen), bad, _objective)


def test_mplp_ebmm_preset_builds_an_ebmm_written_by_mplp():
    from engramlab.memories.base import build_memory
    from engramlab.rules.mplp.write_rule import MPLPWriteRule
    from engramlab.training.config import Experiment

    exp = Experiment.from_preset("mplp-ebmm-strings-quick")
    memory = build_memory(exp.memory_name, (exp.data.string_dim,), **exp.memory_fields)
    assert isinstance(memory.rule, MPLPWriteRule) and memory.memory_floats() > 0
