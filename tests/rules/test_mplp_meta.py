"""MPLP meta-learning (paper 004, Sec. 4): task sources, baselines, MAML, and learning to learn."""

import pytest
import torch

from engramlab.errors import BadInput
from engramlab.rules.mplp.meta import MAML, MPLPMetaLearner, TaskBatch, meta_train, optimizer_unroll
from engramlab.rules.mplp.protocol import init_params, net_forward, per_example_loss
from engramlab.rules.mplp.tasks import MNISTSource, SinusoidSource


def test_sinusoid_source_is_deterministic_and_shaped():
    src = SinusoidSource(steps=5, shots=10, tasks=3, test_points=7, split="val", seed=1)
    a, b = src.batch(4), src.batch(4)
    assert a.x_steps.shape == (3, 5, 10, 1) and a.x_test.shape == (3, 7, 1)
    assert torch.equal(a.y_steps, b.y_steps) and not torch.equal(a.x_steps, src.batch(5).x_steps)
    assert not torch.equal(a.x_test, SinusoidSource(5, 10, 3, 7, split="test", seed=1).batch(4).x_test)


def test_mnist_source_resizes_with_antialiasing_and_one_hot_labels():
    patterns, labels = torch.rand(100, 1, 28, 28), torch.arange(100) % 10
    src = MNISTSource(
        steps=3, shots=8, tasks=2, test_points=5, image_size=12, split="test", patterns=patterns, labels=labels
    )
    batch = src.batch(0)
    assert src.input_size == 144 and batch.x_steps.shape == (2, 3, 8, 144) and batch.y_steps.shape == (2, 3, 8, 10)
    assert src.x.shape[0] == 100 and torch.equal(src.y.argmax(1), labels)
    assert torch.allclose(src.x.mean(1), patterns.flatten(1).mean(1), atol=0.05)


def test_adam_baseline_matches_torch_adam(gen):
    sizes = (1, 6, 1)
    src = SinusoidSource(steps=4, shots=5, tasks=1, test_points=3)
    batch = src.batch(0)
    params = init_params(sizes, 1, gen)
    ours = optimizer_unroll(params, batch, "adam", 0.01, "relu", "mse")[-1]
    ref = [p.clone().requires_grad_(True) for p in params]
    opt = torch.optim.Adam(ref, lr=0.01)
    for t in range(4):
        opt.zero_grad()
        out, _, _ = net_forward(ref, batch.x_steps[:, t], "relu")
        per_example_loss(out, batch.y_steps[:, t], "mse").mean().backward()
        opt.step()
    for p, r in zip(ours, ref):
        torch.testing.assert_close(p, r.detach(), rtol=1e-5, atol=1e-6)


def test_maml_meta_gradient_is_second_order():
    torch.manual_seed(0)
    batch = SinusoidSource(steps=2, shots=5, tasks=2, test_points=4).batch(0)
    batch = TaskBatch(*(t.double() for t in (batch.x_steps, batch.y_steps, batch.x_test, batch.y_test)))
    maml = MAML((1, 4, 1), inner_lr=0.3).double()
    loss, _ = maml.loss(batch)
    (grad,) = torch.autograd.grad(loss, [maml.init[0]])
    eps, i = 1e-6, (0, 2)
    maml.init[0].data[i] += eps
    up = maml.loss(batch)[0]
    maml.init[0].data[i] -= 2 * eps
    down = maml.loss(batch)[0]
    assert grad[i].item() == pytest.approx(((up - down) / (2 * eps)).item(), rel=1e-5, abs=1e-9)


def test_meta_training_improves_the_learned_rule():
    torch.manual_seed(0)
    src = SinusoidSource(steps=2, shots=10, tasks=4)
    fixed = src.batch(0)
    model = MPLPMetaLearner((1, 8, 1), learner="mlp", message_size=2, learn_init=True)
    model.calibrate(src, batches=2)
    before = model.loss(fixed)[0].item()

    class Fixed:
        def batch(self, step, rank=0):
            return fixed

    meta_train(model, Fixed(), steps=40, lr=1e-2, log_every=40)
    assert model.loss(fixed)[0].item() < 0.7 * before


def test_task_batch_of_the_wrong_width_is_bad_input():
    model = MPLPMetaLearner((2, 4, 1), learner="mlp")
    with pytest.raises(BadInput, match="task batch"):
        model.loss(SinusoidSource(steps=1, shots=2, tasks=1).batch(0))


def test_baselines_on_a_step_activation_only_train_the_last_layer(gen):
    sizes = (3, 4, 2)
    src = SinusoidSource(steps=2, shots=5, tasks=2, test_points=3)
    x = torch.randn(2, 2, 5, 3, generator=gen)
    y = torch.nn.functional.one_hot(torch.randint(0, 2, (2, 2, 5), generator=gen), 2).float()
    batch = TaskBatch(x, y, x[:, 0], y[:, 0], seed=src.batch(0).seed)
    params = init_params(sizes, 2, gen)
    final = optimizer_unroll(params, batch, "sgd", 0.5, "step", "ce")[-1]
    assert torch.equal(final[0], params[0]) and torch.equal(final[1], params[1])
    assert not torch.equal(final[2], params[2])
