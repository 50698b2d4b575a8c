"""MPLP meta-learning: task batches, the meta-learner module, and SGD/Adam/MAML baselines (paper 004, Sec. 4).

A task batch holds B tasks, each with T inner-step minibatches of S shots and Q held-out points. Every
model here unrolls T inner steps on a fresh task network per task (batched over tasks) and exposes
``.loss(batch) -> (scalar, logs)`` for meta-training and ``.evaluate(batch) -> (B, T+1)`` held-out
losses after 0..T inner steps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engramlab.errors import BadConfig, BadInput
from engramlab.nn.fast import adam
from engramlab.rules.mplp.protocol import MPLP, init_params, net_forward, per_example_loss

log = logging.getLogger(__name__)


@dataclass
class TaskBatch:
    """B tasks: x_steps (B, T, S, n_in), y_steps (B, T, S, n_out), x_test (B, Q, n_in), y_test (B, Q, n_out).

    ``seed`` seeds the per-task random initial weights so every model sees the same initial networks.
    """

    x_steps: Tensor
    y_steps: Tensor
    x_test: Tensor
    y_test: Tensor
    seed: int = 0

    def to(self, device) -> TaskBatch:
        return TaskBatch(*(t.to(device) for t in (self.x_steps, self.y_steps, self.x_test, self.y_test)), self.seed)

    @property
    def steps(self) -> int:
        return self.x_steps.shape[1]

    def first(self, steps: int) -> TaskBatch:
        """The same tasks with only their first ``steps`` inner-step minibatches (the curriculum's unrolls)."""
        return TaskBatch(self.x_steps[:, :steps], self.y_steps[:, :steps], self.x_test, self.y_test, self.seed)


def _check(batch: TaskBatch, sizes: Sequence[int]) -> None:
    if batch.x_steps.dim() != 4 or batch.x_steps.shape[-1] != sizes[0] or batch.y_steps.shape[-1] != sizes[-1]:
        raise BadInput(
            f"task batch must be x (B, T, S, {sizes[0]}) / y (B, T, S, {sizes[-1]}); "
            f"got {tuple(batch.x_steps.shape)} / {tuple(batch.y_steps.shape)}"
        )


def held_out(params: list[Tensor], batch: TaskBatch, activation: str, loss: str) -> tuple[Tensor, Tensor | None]:
    """(B,) held-out mean loss and, for classification, (B,) accuracy."""
    out, _, _ = net_forward(params, batch.x_test, activation)
    value = per_example_loss(out, batch.y_test, loss).mean(1)
    acc = (out.argmax(-1) == batch.y_test.argmax(-1)).float().mean(1) if loss == "ce" else None
    return value, acc


def _task_init(
    sizes: Sequence[int], batch: TaskBatch, learned: nn.ParameterList | None, scheme: str = "torch"
) -> list[Tensor]:
    """Each task's initial weights: the learned init, or fresh ones seeded by the batch (``scheme`` of init_params)."""
    b = batch.x_steps.shape[0]
    if learned is not None:
        return [p.unsqueeze(0).expand(b, *p.shape) for p in learned]
    gen = torch.Generator(device=batch.x_steps.device).manual_seed(int(batch.seed) + 7919)
    return init_params(sizes, b, gen, device=batch.x_steps.device, scheme=scheme)


def _learned_init(sizes: Sequence[int]) -> nn.ParameterList:
    return nn.ParameterList([nn.Parameter(p[0]) for p in init_params(sizes, 1)])


def normalise_gradients(module: nn.Module) -> None:
    """Hook: each parameter's gradient tensor is divided by its norm (NOTES, MPLP outer optimiser)."""
    for p in module.parameters():
        p.register_hook(lambda g: g / (g.norm() + 1e-8))


class MPLPMetaLearner(nn.Module):
    """The meta-trained MPLP rule on one task family (Sec. 4).

    Meta-loss (NOTES): 0.7 · mean over inner steps of the minibatch loss seen at that step + 0.3 · held-out
    loss after the last step. ``learn_init`` meta-learns the initial task weights (MAML-style, Sec. 4.1.2).

    ``init_scheme``: the task networks' fresh weights ("torch" or "xavier", see ``init_params``).
    ``rule_options``: extra MPLP arguments (e.g. the residual form, ``residual=True, residual_lr=...``).
    ``truncate``: **departure from paper 004**: truncated back-propagation through the unroll; parameters and
    learner states are detached every ``truncate`` inner steps while meta-training (None: the full
    second-order meta-gradient through all steps, as the paper).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        loss: str = "mse",
        message_size: int = 8,
        learner: str = "gru",
        hidden: int = 15,
        sharing: str = "layer",
        learn_init: bool = False,
        step_weight: float = 0.7,
        normalize_grads: bool = True,
        init_scheme: str = "torch",
        rule_options: dict | None = None,
        truncate: int | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= step_weight <= 1.0:
            raise BadConfig(f"step_weight must be in [0, 1], got {step_weight}")
        self.sizes, self.activation, self.loss_kind, self.step_weight = tuple(sizes), activation, loss, step_weight
        self.rule = MPLP(
            sizes, message_size=message_size, learner=learner, hidden=hidden, sharing=sharing, **(rule_options or {})
        )
        self.init = _learned_init(sizes) if learn_init else None
        self.init_scheme, self.truncate = init_scheme, truncate
        if normalize_grads:
            normalise_gradients(self)

    def unroll(
        self, batch: TaskBatch, params: list[Tensor] | None = None, activation: str | None = None
    ) -> tuple[list[list[Tensor]], Tensor]:
        """All parameter states [θ_0..θ_T] and the (B, T) minibatch losses seen at each step."""
        _check(batch, self.sizes if params is None else [params[0].shape[1], params[-1].shape[-1]])
        act = activation or self.activation
        params = params if params is not None else _task_init(self.sizes, batch, self.init, self.init_scheme)
        state = self.rule.init_state(params)
        history, seen = [params], []
        for t in range(batch.steps):
            if self.truncate and t > 0 and t % self.truncate == 0 and torch.is_grad_enabled():
                params = [p.detach() for p in params]
                state = {k: [None if v is None else v.detach() for v in vs] for k, vs in state.items()}
            params, state, losses = self.rule.step(
                params, state, batch.x_steps[:, t], batch.y_steps[:, t], act, self.loss_kind
            )
            history.append(params)
            seen.append(losses.mean(1))
        return history, torch.stack(seen, 1)

    def loss(self, batch: TaskBatch) -> tuple[Tensor, dict[str, float]]:
        history, seen = self.unroll(batch)
        final, acc = held_out(history[-1], batch, self.activation, self.loss_kind)
        total = self.step_weight * seen.mean() + (1 - self.step_weight) * final.mean()
        logs = {"step_loss": seen.mean().item(), "heldout_loss": final.mean().item()}
        if acc is not None:
            logs["heldout_acc"] = acc.mean().item()
        return total, logs

    def param_groups(self, lr: float, scalar_lr: float | None = None) -> list[dict]:
        """Outer-optimiser groups: the residual rule's per-layer rates (``log_lr``) at ``scalar_lr``, the rest at lr.

        The gains of the learned corrections stay at ``lr``: at a larger rate (0.05, measured) they grew within
        40 outer steps until the corrections swamped the SGD signal and the rule stopped learning (ln 10).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        if scalar_lr is None:
            return [{"params": params, "lr": lr}]
        scalar = {id(p) for n, p in self.named_parameters() if n.endswith("log_lr")}
        return [
            {"params": [p for p in params if id(p) not in scalar], "lr": lr},
            {"params": [p for p in params if id(p) in scalar], "lr": scalar_lr},
        ]

    @torch.no_grad()
    def calibrate(self, source, batches: int = 4, device=None) -> None:
        """Gather the standardisation statistics from the first ``batches`` minibatches, then freeze them."""
        with self.rule.calibrating():
            for i in range(batches):
                b = source.batch(10_000_000 + i)
                self.unroll(b.to(device) if device is not None else b)

    @torch.no_grad()
    def evaluate(
        self, batch: TaskBatch, params: list[Tensor] | None = None, activation: str | None = None
    ) -> tuple[Tensor, Tensor | None]:
        history, _ = self.unroll(batch, params, activation)
        return _curves(history, batch, activation or self.activation, self.loss_kind)


def _curves(history: list[list[Tensor]], batch: TaskBatch, activation: str, loss: str) -> tuple[Tensor, Tensor | None]:
    vals = [held_out(p, batch, activation, loss) for p in history]
    losses = torch.stack([v[0] for v in vals], 1)
    accs = torch.stack([v[1] for v in vals], 1) if vals[0][1] is not None else None
    return losses, accs


# ------------------------------------------------------------------------------------------ baselines
def optimizer_unroll(
    params: list[Tensor],
    batch: TaskBatch,
    method: str,
    lr: float,
    activation: str,
    loss: str,
    create_graph: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> list[list[Tensor]]:
    """Plain SGD or Adam on every task's minibatches (batched over tasks). Returns [θ_0..θ_T]."""
    if method not in ("sgd", "adam"):
        raise BadConfig(f"baseline optimiser must be 'sgd' or 'adam', got {method!r}")
    history = [params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t in range(batch.steps):
        with torch.enable_grad():
            ps = params if create_graph else [p.detach().requires_grad_(True) for p in params]
            out, _, _ = net_forward(ps, batch.x_steps[:, t], activation)
            # sum over tasks of each task's mean loss: the gradient w.r.t. a task's weights is its own
            total = per_example_loss(out, batch.y_steps[:, t], loss).mean(1).sum()
            grads = torch.autograd.grad(total, ps, create_graph=create_graph, allow_unused=True)
            # a step activation passes no gradient to the layers below it: their gradient is zero
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, grads)]
        if method == "sgd":
            params = [p - lr * g for p, g in zip(ps, grads)]
        else:
            m = [betas[0] * a + (1 - betas[0]) * g for a, g in zip(m, grads)]
            v = [betas[1] * a + (1 - betas[1]) * g * g for a, g in zip(v, grads)]
            c1, c2 = 1 - betas[0] ** (t + 1), 1 - betas[1] ** (t + 1)
            params = [p - lr * (a / c1) / ((s / c2).sqrt() + eps) for p, a, s in zip(ps, m, v)]
        if not create_graph:
            params = [p.detach() for p in params]
        history.append(params)
    return history


def baseline_curves(
    batch: TaskBatch, sizes: Sequence[int], method: str, lr: float, activation: str, loss: str, init: str = "torch"
) -> tuple[Tensor, Tensor | None]:
    """Held-out (B, T+1) losses (and accuracies) of SGD/Adam from the batch's seeded initial weights."""
    history = optimizer_unroll(_task_init(sizes, batch, None, init), batch, method, lr, activation, loss)
    with torch.no_grad():
        return _curves(history, batch, activation, loss)


def lr_curves(
    source,
    sizes: Sequence[int],
    method: str,
    grid: Sequence[float],
    activation: str,
    loss: str,
    batches: int = 4,
    init: str = "torch",
) -> dict[float, tuple[Tensor, Tensor | None]]:
    """{lr: (mean held-out loss (T+1,), mean accuracy (T+1,) | None)} over validation batches 0..batches-1."""
    out = {}
    for lr in grid:
        runs = [baseline_curves(source.batch(i), sizes, method, lr, activation, loss, init) for i in range(batches)]
        losses = torch.cat([r[0] for r in runs]).mean(0)
        accs = torch.cat([r[1] for r in runs]).mean(0) if runs[0][1] is not None else None
        out[lr] = (losses, accs)
    return out


def pick_lr(curves: dict[float, tuple[Tensor, Tensor | None]], step: int = -1, metric: str = "loss") -> float:
    """The lr with the lowest held-out loss (``metric="loss"``) or highest accuracy ("acc") after ``step``."""
    if metric == "acc":
        return max(curves, key=lambda lr: float(curves[lr][1][step]))
    finite = {lr: float(c[0][step]) if math.isfinite(float(c[0][step])) else float("inf") for lr, c in curves.items()}
    return min(finite, key=finite.get)


def tune_lr(
    source,
    sizes: Sequence[int],
    method: str,
    grid: Sequence[float],
    activation: str,
    loss: str,
    batches: int = 4,
    metric: str | None = None,
    init: str = "torch",
) -> tuple[float, dict[float, float]]:
    """Pick the lr on validation task batches; returns (best, {lr: score}).

    ``metric``: "loss" (lowest final held-out loss) or "acc" (highest final held-out accuracy); default "acc"
    for classification ("ce"), "loss" otherwise. On few-step MNIST the final loss is nearly flat at ln 10
    for small rates, and choosing by loss picked SGD lr 0.03 (acc 0.11) where lr 1 reaches 0.29 (issue 14).
    """
    metric = metric or ("acc" if loss == "ce" else "loss")
    curves = lr_curves(source, sizes, method, grid, activation, loss, batches, init)
    best = pick_lr(curves, -1, metric)
    scores = {lr: float(c[1 if metric == "acc" else 0][-1]) for lr, c in curves.items()}
    if metric == "loss":
        scores = {lr: v if math.isfinite(v) else float("inf") for lr, v in scores.items()}
    return best, scores


class MAML(nn.Module):
    """Second-order MAML (Finn et al. 2017) on the same protocol: learned init, inner SGD at ``inner_lr``."""

    def __init__(
        self, sizes: Sequence[int], activation: str = "relu", loss: str = "mse", inner_lr: float = 0.05
    ) -> None:
        super().__init__()
        self.sizes, self.activation, self.loss_kind, self.inner_lr = tuple(sizes), activation, loss, inner_lr
        self.init = _learned_init(sizes)

    def loss(self, batch: TaskBatch) -> tuple[Tensor, dict[str, float]]:
        _check(batch, self.sizes)
        params = _task_init(self.sizes, batch, self.init)
        history = optimizer_unroll(
            params, batch, "sgd", self.inner_lr, self.activation, self.loss_kind, create_graph=True
        )
        final, _ = held_out(history[-1], batch, self.activation, self.loss_kind)
        return final.mean(), {"heldout_loss": final.mean().item()}

    def evaluate(self, batch: TaskBatch) -> tuple[Tensor, Tensor | None]:
        params = [p.detach() for p in _task_init(self.sizes, batch, self.init)]
        history = optimizer_unroll(params, batch, "sgd", self.inner_lr, self.activation, self.loss_kind)
        with torch.no_grad():
            return _curves(history, batch, self.activation, self.loss_kind)


def curriculum_length(step: int, full: int, ramp: int) -> int:
    """Inner steps unrolled at outer step ``step``: 1 at the start, rising linearly to ``full`` at ``ramp``."""
    if ramp <= 0:
        return full
    return max(1, min(full, 1 + (step * full) // ramp))


def meta_train(
    model: nn.Module,
    source,
    steps: int,
    lr: float = 1e-4,
    log_every: int = 50,
    device=None,
    max_seconds: float | None = None,
    scalar_lr: float | None = None,
    curriculum: int = 0,
    start_step: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    on_log=None,
    max_cpu_seconds: float | None = None,
    cpu_used: float = 0.0,
) -> list[dict[str, float]]:
    """Outer Adam loop (NOTES: Adam 1e-4; per-tensor gradient normalisation is a hook on the model).

    ``scalar_lr``: a separate outer lr for the residual rule's rates/gains (``model.param_groups``).
    ``curriculum``: **departure from paper 004**: unroll 1 inner step at first and one more every
    ``curriculum / T`` outer steps, the full T from outer step ``curriculum`` on (0: always T).
    ``start_step``/``optimizer``: resume a run; ``on_log(step, model, optimizer, curve)`` is called at every
    logged step (e.g. to checkpoint or validate; its time is not counted in the budgets).
    ``max_cpu_seconds``: stop when this process's CPU time spent in meta-training (``time.process_time``,
    ``cpu_used`` of it before a resume) exceeds it; every curve row records ``cpu_seconds``.
    Returns the meta-training curve: one dict per ``log_every`` steps with the mean logs over that window.
    """
    if optimizer is not None:
        opt = optimizer
    elif hasattr(model, "param_groups"):
        opt = adam(model.param_groups(lr, scalar_lr), lr=lr)
    else:
        opt = adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    curve, window, start, cpu_start, excluded = [], [], time.time(), time.process_time(), 0.0
    for step in range(start_step, steps):
        batch = source.batch(step)
        batch = batch.to(device) if device is not None else batch
        if curriculum:
            batch = batch.first(curriculum_length(step, batch.steps, curriculum))
        total, logs = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        window.append({"loss": total.item(), **logs})
        if (step + 1) % log_every == 0 or step == steps - 1:
            row = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            cpu = cpu_used + time.process_time() - cpu_start - excluded
            curve.append({"step": step + 1, "inner_steps": batch.steps, "cpu_seconds": cpu, **row})
            log.info("meta step %d %s", step + 1, row)
            window = []
            if on_log is not None:
                t0 = time.process_time()
                on_log(step + 1, model, opt, curve)
                excluded += time.process_time() - t0
        if max_cpu_seconds is not None and cpu_used + time.process_time() - cpu_start - excluded > max_cpu_seconds:
            log.warning("meta-training stopped at step %d after %.0f CPU-s", step + 1, max_cpu_seconds)
            if not curve or curve[-1]["step"] != step + 1:
                cpu = cpu_used + time.process_time() - cpu_start - excluded
                curve.append({"step": step + 1, "inner_steps": batch.steps, "cpu_seconds": cpu, "stopped_early": 1.0})
            break
        if max_seconds is not None and time.time() - start > max_seconds:
            log.warning("meta-training stopped at step %d after %.0f s (max_seconds)", step + 1, max_seconds)
            curve.append({"step": step + 1, "stopped_early": 1.0})
            break
    return curve
