"""Shared pieces of the MPLP benchmarks (paper 004): per-step curves with CIs, lr tuning, plots."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import mean_ci
from engramlab.nn.fast import adam
from engramlab.rules.mplp.meta import baseline_curves, lr_curves, meta_train, pick_lr

log = logging.getLogger(__name__)

# Widened after the first runs picked SGD lr 1 (then the grid's top) on MNIST: both grids now reach past the
# best values seen, and a best lr at a grid edge is logged and flagged in the result (``at_edge``). Suites may
# pass finer grids (mplp-mnist does).
SGD_GRID = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
ADAM_GRID = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3]


def evaluate_curves(fn: Callable, source, batches: int) -> tuple[Tensor, Tensor | None]:
    """Concatenate ``fn(batch) -> ((B, T+1) losses, accuracies | None)`` over test batches 0..batches-1."""
    losses, accs = [], []
    for i in range(batches):
        value, acc = fn(source.batch(i))
        losses.append(value)
        if acc is not None:
            accs.append(acc)
    return torch.cat(losses), (torch.cat(accs) if accs else None)


def tuned_baselines(
    val_source,
    test_source,
    sizes: Sequence[int],
    activation: str,
    loss: str,
    batches: int,
    val_batches: int = 2,
    grids: dict[str, Sequence[float]] | None = None,
    init: str = "torch",
    per_step: bool = False,
):
    """SGD and Adam with lrs tuned on validation tasks; returns {name: (losses, accs, lr, grid scores)}.

    The lr is the one with the best *final* held-out score on the validation tasks: highest accuracy for
    classification ("ce"), lowest loss otherwise (``tune_lr``). ``grids`` overrides SGD_GRID / ADAM_GRID
    ({"sgd": [...], "adam": [...]}); ``init`` is the task networks' init scheme. ``per_step`` adds, per
    optimiser, an envelope row "… (val-best lr at each step)": for every inner step t the test curve at t
    of the lr that was best on validation at t (a separately tuned lr for each reported step).
    """
    grids = {"sgd": SGD_GRID, "adam": ADAM_GRID, **(grids or {})}
    metric = "acc" if loss == "ce" else "loss"
    out = {}
    for method in ("sgd", "adam"):
        grid = grids[method]
        val = lr_curves(val_source, sizes, method, grid, activation, loss, val_batches, init)
        best = pick_lr(val, -1, metric)
        scores = {lr: float(c[1 if metric == "acc" else 0][-1]) for lr, c in val.items()}
        log.info("%s lr grid %s -> %s", method, scores, best)
        if best in (min(grid), max(grid)):
            log.warning("%s: the best lr %g is at the edge of the grid %s", method, best, grid)
            scores = {**scores, "at_edge": best}
        label = "SGD" if method == "sgd" else "Adam"
        picks = [pick_lr(val, t, metric) for t in range(len(val[best][0]))] if per_step else [best]
        test = {}
        for lr in sorted(set(picks)):
            run = lambda b, m=method, lr=lr: baseline_curves(b, sizes, m, lr, activation, loss, init)  # noqa: E731
            test[lr] = evaluate_curves(run, test_source, batches)
        out[f"{label} (lr {best:g})"] = (*test[best], best, scores)
        if per_step:
            cols = range(len(picks))
            losses = torch.stack([test[picks[t]][0][:, t] for t in cols], 1)
            accs = torch.stack([test[picks[t]][1][:, t] for t in cols], 1) if test[best][1] is not None else None
            out[f"{label} (val-best lr at each step)"] = (losses, accs, picks, scores)
    return out


def curve_row(name: str, losses: Tensor, accs: Tensor | None, steps_to_report: Sequence[int]) -> dict:
    """One table row: held-out loss (± 95% CI over tasks) after the listed inner steps."""
    row: dict = {"model": name, "tasks": losses.shape[0]}
    for t in steps_to_report:
        m, ci = mean_ci(losses[:, t])
        row[f"loss@{t}"], row[f"loss@{t}_ci"] = float(m), float(ci)
        if accs is not None:
            m, ci = mean_ci(accs[:, t])
            row[f"acc@{t}"], row[f"acc@{t}_ci"] = float(m), float(ci)
    return row


def plot_curves(path, curves: dict[str, Tensor], ylabel: str, title: str) -> None:
    """Mean ± 95% CI over tasks against inner step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, values in curves.items():
        mean = values.mean(0)
        ci = torch.tensor([float(mean_ci(values[:, t])[1]) for t in range(values.shape[1])])
        steps = range(values.shape[1])
        ax.plot(steps, mean, marker="o", ms=3, label=name)
        ax.fill_between(steps, mean - ci, mean + ci, alpha=0.2)
    ax.set_xlabel("inner step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_meta_curves(path, curves: dict[str, list[dict]], key: str = "loss", log_scale: bool = True) -> None:
    """Meta-training curves (windowed mean of the meta-loss) of each meta-trained model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, rows in curves.items():
        rows = [r for r in rows if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=name)
    ax.set_xlabel("outer step")
    ax.set_ylabel(f"meta-training {key}")
    if log_scale:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def meta_train_checkpointed(
    ctx: BenchContext, name: str, model, train, budget: dict, monitor=None, calibrate_batches: int = 2
) -> list[dict]:
    """meta_train with a checkpoint every ``budget["monitor_every"]`` outer steps under ctx.work_dir.

    ``engram bench ... --resume`` continues from it (a plain tensor/number file, loaded with
    ``weights_only=True``). ``budget`` keys: outer_steps, outer_lr, scalar_lr, curriculum, max_seconds,
    max_cpu_seconds, monitor_every (0: no checkpoints, ~30 logged points). ``monitor(model) -> dict`` adds
    validation numbers to every logged row."""
    path = ctx.work_dir / f"{name}.pt"
    start, cpu_used, past, opt = 0, 0.0, [], None
    if budget["scalar_lr"] is not None:
        opt = adam(model.param_groups(budget["outer_lr"], budget["scalar_lr"]), lr=budget["outer_lr"])
    if ctx.resume and path.exists():
        ckpt = torch.load(path, weights_only=True)
        model.load_state_dict(ckpt["model"])
        if opt is not None:
            opt.load_state_dict(ckpt["opt"])
        start, cpu_used, past = ckpt["step"], ckpt["cpu_seconds"], ckpt["curve"]
        log.info("resumed %s at outer step %d (%.0f CPU-s)", name, start, cpu_used)
    elif model.rule.learned:
        model.calibrate(train, batches=calibrate_batches, device=ctx.device)
    every = budget["monitor_every"] or max(1, budget["outer_steps"] // 30)

    def on_log(step, mod, optimizer, curve):
        if monitor is not None:
            curve[-1].update(monitor(mod))
        if budget["monitor_every"]:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
            state = {"model": mod.state_dict(), "opt": optimizer.state_dict(), "step": step}
            state.update(cpu_seconds=curve[-1]["cpu_seconds"], curve=past + curve)
            torch.save(state, path.with_suffix(".tmp"))
            path.with_suffix(".tmp").replace(path)

    if start >= budget["outer_steps"] or (past and "stopped_early" in past[-1]):
        return past
    curve = meta_train(
        model,
        train,
        budget["outer_steps"],
        lr=budget["outer_lr"],
        log_every=every,
        device=ctx.device,
        max_seconds=budget["max_seconds"],
        scalar_lr=budget["scalar_lr"],
        curriculum=budget["curriculum"],
        start_step=start,
        optimizer=opt,
        on_log=on_log,
        max_cpu_seconds=budget["max_cpu_seconds"],
        cpu_used=cpu_used,
    )
    return past + curve
