"""MPLP meta-training departures from paper 004 (issue 14): curriculum, truncation, CPU budget."""

import torch

from engramlab.rules.mplp.meta import MPLPMetaLearner, curriculum_length, meta_train
from engramlab.rules.mplp.tasks import SinusoidSource


def test_curriculum_unrolls_one_step_first_and_all_steps_after_the_ramp():
    assert [curriculum_length(s, 20, 100) for s in (0, 4, 5, 50, 95, 100, 500)] == [1, 1, 2, 11, 20, 20, 20]
    assert curriculum_length(0, 20, 0) == 20


def test_meta_train_logs_the_curriculum_and_stops_on_the_cpu_budget():
    torch.manual_seed(0)
    model = MPLPMetaLearner((1, 8, 1), message_size=2, hidden=4, rule_options={"residual": True})
    src = SinusoidSource(steps=4, shots=5, tasks=2)
    curve = meta_train(model, src, 6, lr=1e-3, log_every=1, curriculum=4, scalar_lr=1e-2)
    assert [r["inner_steps"] for r in curve] == [1, 2, 3, 4, 4, 4]
    stopped = meta_train(model, src, 100, log_every=1, max_cpu_seconds=0.0)
    assert len(stopped) == 1 and stopped[-1]["cpu_seconds"] >= 0


def test_truncated_unroll_cuts_the_meta_gradient_of_early_steps():
    torch.manual_seed(0)
    batch = SinusoidSource(steps=4, shots=5, tasks=2).batch(0)
    full = MPLPMetaLearner((1, 6, 1), message_size=2, hidden=4, normalize_grads=False)
    cut = MPLPMetaLearner((1, 6, 1), message_size=2, hidden=4, normalize_grads=False, truncate=2)
    cut.load_state_dict(full.state_dict())
    a, b = full.loss(batch)[0], cut.loss(batch)[0]
    torch.testing.assert_close(a, b)  # same forward
    ga = torch.autograd.grad(a, list(full.parameters()), allow_unused=True)
    gb = torch.autograd.grad(b, list(cut.parameters()), allow_unused=True)
    assert any(x is not None and y is not None and not torch.allclose(x, y) for x, y in zip(ga, gb))
