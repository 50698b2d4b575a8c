"""`engram bench mplp-mnist`: MPLP training a 144-50-10 MNIST classifier in 20 steps × 8 shots (paper 004, Sec. 4.2).

The rule is a stateful GRU learner (hidden 7, message 4), one learner shared by all weight matrices and
one by all bias vectors (sharing "kind", NOTES). Baselines: SGD and Adam with lrs tuned on validation
tasks. Transfers of the learned rule (no further meta-training): the same network with a step
activation, and a 784-100-10 network on full 28×28 images. Test accuracy and loss on 200 held-out
images after each inner step, mean ± 95% CI over tasks (a task = a fresh random network and minibatches).
Only MNIST's 10k test file is shipped: the dataset loader splits it by index (train [0, 8000) meta-trains
the rule, val [8000, 9000) tunes the baselines, test [9000, 10000) evaluates).
"""

from __future__ import annotations

import logging
import time

import torch

from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites.mplp_common import (
    ADAM_GRID,
    SGD_GRID,
    curve_row,
    evaluate_curves,
    plot_curves,
    plot_meta_curves,
    tuned_baselines,
)
from engramlab.rules.mplp.meta import MPLPMetaLearner, _task_init, meta_train
from engramlab.rules.mplp.tasks import MNISTSource

log = logging.getLogger(__name__)
STEPS, SHOTS = 20, 8
# Paper budget (outer steps) not readable from the notebooks: FULL's count is our choice.
# Measured costs on the shared 2-core CPU (one thread, after the learner speed-up, see protocol.py): one outer
# step (20 inner steps × 8 shots through a GRU per synapse, 61.6k learner rows per inner step, forward and
# backward) ≈ 4-6 CPU-s; evaluating one task ≈ 3.5 CPU-s on 144-50-10 but ≈ 45 CPU-s on the 784-100-10
# transfer (627k learner rows per inner step). QUICK therefore evaluates the 100 fresh test tasks
# on both 12x12 settings but only 10 on the 28x28 transfer (100 would take ~75 CPU-min); FULL evaluates 100
# everywhere. QUICK meta-trains 40 outer steps (≈ 4 CPU-min, no wall-clock cap).
QUICK = {
    "outer_steps": 40,
    "tasks_per_batch": 1,
    "outer_lr": 1e-3,
    "test_tasks": 100,
    "big_test_tasks": 10,
    "eval_tasks_per_batch": 2,
    "val_tasks": 50,
    "max_seconds": None,
}
FULL = {
    "outer_steps": 10000,
    "tasks_per_batch": 4,
    "outer_lr": 1e-4,
    "test_tasks": 100,
    "big_test_tasks": 100,
    "eval_tasks_per_batch": 10,
    "val_tasks": 100,
    "max_seconds": None,
}


@register_suite(
    "mplp-mnist",
    "MPLP (GRU 7, msg 4) vs tuned SGD/Adam on 12x12 MNIST 20x8, transfers to step activation and 784-100-10",
)
def mplp_mnist(ctx: BenchContext) -> BenchResult:
    budget = QUICK if ctx.quick else FULL
    torch.manual_seed(ctx.seed)
    dev = ctx.device
    kw = {"data_dir": ctx.data_dir, "seed": ctx.seed}
    ev = budget["eval_tasks_per_batch"]
    train = MNISTSource(STEPS, SHOTS, budget["tasks_per_batch"], split="train", **kw)
    sizes = (144, 50, 10)
    rows, notes, extra = [], [], {}
    model = MPLPMetaLearner(
        sizes, activation="sigmoid", loss="ce", message_size=4, learner="gru", hidden=7, sharing="kind"
    ).to(dev)
    model.calibrate(train, batches=2, device=dev)
    start = time.time()
    curve = meta_train(
        model,
        train,
        budget["outer_steps"],
        lr=budget["outer_lr"],
        log_every=max(1, budget["outer_steps"] // 30),
        device=dev,
        max_seconds=budget["max_seconds"],
    )
    secs = time.time() - start
    notes.append(
        f"MPLP meta-trained {curve[-1]['step']} outer steps ({budget['tasks_per_batch']} task(s)) in {secs:.0f} s"
    )

    def run_mplp(b, act="sigmoid", big=None):
        b = b.to(dev)
        params = _task_init(big, b, None) if big else None
        losses, accs = model.evaluate(b, params=params, activation=act)
        return losses.cpu(), accs.cpu()

    settings = [
        ("12x12 sigmoid 144-50-10", 12, "sigmoid", sizes),
        ("transfer: step activation", 12, "step", sizes),
        ("transfer: 28x28 784-100-10", 28, "sigmoid", (784, 100, 10)),
    ]
    for label, image, act, net in settings:
        val = MNISTSource(STEPS, SHOTS, budget["val_tasks"], image_size=image, split="val", **kw)
        tasks = budget["big_test_tasks"] if image == 28 else budget["test_tasks"]
        per_batch = min(ev, tasks)
        test = MNISTSource(STEPS, SHOTS, per_batch, image_size=image, split="test", **kw)
        batches = -(-tasks // per_batch)
        log.info("mplp-mnist: %s, %d test tasks", label, batches * per_batch)
        losses, accs = {}, {}
        for name, (lo, ac, _lr, scores) in tuned_baselines(val, test, net, act, "ce", batches, val_batches=1).items():
            losses[name], accs[name] = lo, ac
            extra[f"{label} {name} lr grid (val loss)"] = {str(k): v for k, v in scores.items()}
        big = net if net != sizes else None
        lo, ac = evaluate_curves(lambda b, a=act, g=big: run_mplp(b, a, g), test, batches)
        losses["MPLP (GRU 7, msg 4)"], accs["MPLP (GRU 7, msg 4)"] = lo, ac
        for name in losses:
            rows.append({"setting": label, **curve_row(name, losses[name], accs[name], [0, 1, 5, STEPS])})
        tag = label.split(":")[-1].strip().replace(" ", "_")
        plot_curves(ctx.figure_path(f"accuracy_{tag}.png"), accs, "test accuracy", label)
        extra[f"{label} accuracy curves"] = {k: v.mean(0).tolist() for k, v in accs.items()}
    plot_meta_curves(ctx.figure_path("meta_training.png"), {"MPLP": curve})
    extra["meta_curve"] = curve
    notes.append("Step activation: SGD/Adam gradients through a step are zero, so they only train the last layer.")
    notes.append(
        f"Baseline lrs: lowest final loss on {budget['val_tasks']} validation tasks over the grids in extra "
        f"(SGD {SGD_GRID}, Adam {ADAM_GRID}); 'at_edge' marks a best lr on a grid edge."
    )
    if budget["big_test_tasks"] < 100:
        notes.append(
            f"The 28x28 transfer is evaluated on {budget['big_test_tasks']} tasks only in this preset (below the "
            "issue's 100; ~45 CPU-s per task on the shared CPU); the FULL preset evaluates 100."
        )
    notes.append("Paper (Fig. 5/6) gives curves, not numbers we could read: paper columns are None.")
    cols = ["setting", "model", "tasks"] + [
        f"{m}@{t}{s}" for t in (0, 1, 5, STEPS) for m in ("acc", "loss") for s in ("", "_ci")
    ]
    return BenchResult(
        rows=rows,
        columns=cols,
        config={
            **budget,
            "steps": STEPS,
            "shots": SHOTS,
            "sizes": sizes,
            "heldout_images": 200,
            "split": "loader index splits of the t10k file",
        },
        extra=extra,
        notes=notes,
        title="MPLP on MNIST: test accuracy / loss after inner steps",
    )
