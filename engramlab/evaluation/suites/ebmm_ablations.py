"""`engram bench ebmm-ablations`: what each EBMM ingredient buys (issue 4, item 6; papers/000 App. A,
C and Fig. 4; papers/001 on fixed step sizes).

One base EBMM (gated RNN on ±1 strings) and variants that change one thing: fewer/more write steps,
fewer/more read steps, no α‖∇ₓE‖² term, no β‖θ − θ̄‖² term, final-step instead of step-wise loss,
first- instead of second-order meta-gradients, fixed (not meta-learned) read and write step sizes,
the MAML-style write and the learned-decoder read (papers/001). Every variant is meta-trained with the
same budget on the same training episodes (same seed) and evaluated on the same test episodes.
"""

from __future__ import annotations

import logging

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, evaluate, meta_train, query_error
from engramlab.memories.base import build_memory
from engramlab.viz import plot_bars

log = logging.getLogger(__name__)

VARIANTS = [
    ("base", {}),
    ("write_steps=1", {"write_steps": 1}),
    ("write_steps=5", {"write_steps": 5}),
    ("read_steps=1", {"read_steps": 1}),
    ("read_steps=8", {"read_steps": 8}),
    ("no α‖∇ₓE‖² term", {"alpha": 0.0}),
    ("no β‖θ−θ̄‖² term", {"beta": 0.0}),
    ("final-step loss", {"loss_steps": "final"}),
    ("first-order", {"first_order": True}),
    ("fixed step sizes", {"learn_read_steps": False, "learn_write_lr": False}),
    ("maml write (λ=0.5)", {"write_rule": "maml", "write_rule_options": {}, "write_lr": 0.5}),
    ("decoder read", {"read": "decoder"}),
]

QUICK = {
    "dim": 32,
    "T": 8,
    "flip": 0.15,
    "batch_size": 8,
    "steps": 120,
    "test_batches": 4,
    "ebmm": {
        "hidden_size": 64,
        "hops": 3,
        "write_steps": 3,
        "read_steps": 4,
        "read_gamma": 1.0,
        "write_rule_options": {"lr_init": [1.0, 1.0, 0.1]},
    },
    "train": {"lr": 1e-2, "clip_norm": 1.0},
}
QUICK_DEVIATIONS = (
    "Quick preset deviations from papers/000 (named): 32-bit strings, T = 8, 15% flips, hidden 64, 3 hops, "
    "120 meta-steps, AdamW lr 1e-2 (not 5e-5), clip 1.0 (not 0.05), initial write rates [1, 1, 0.1] for the "
    "energy, gradient and prior terms (not 1e-4), as in ebmm-strings --quick."
)
FULL = {
    "dim": 128,
    "T": 32,
    "flip": 0.1,
    "batch_size": 16,
    "steps": 2_000_000,
    "test_batches": 63,
    "ebmm": {"write_steps": 3, "read_steps": 5},
    "train": dict(PAPER_TRAIN),
}


def source(budget: dict, split: str, seed: int) -> EpisodeSource:
    config = DataConfig(
        dataset="binary_strings",
        string_dim=budget["dim"],
        episode_length=budget["T"],
        batch_size=budget["batch_size"],
        corruption=f"flip:p={budget['flip']}",
    )
    return EpisodeSource(config, split, seed)


def plot(rows: list[dict], path) -> None:
    """Hamming error per variant with its 95% CI; the query's own error as a dashed line."""
    query, variants = rows[0], rows[1:]
    plot_bars(
        [r["variant"] for r in variants],
        [r["hamming"] for r in variants],
        [r["hamming_ci"] for r in variants],
        path,
        "Hamming error after reading (lower is better)",
        reference=(query["hamming"], "query (no read)"),
        title="EBMM ablations",
    )


@register_suite("ebmm-ablations", "EBMM ablations: write/read steps, α/β terms, step-wise loss, meta-gradient order")
def ebmm_ablations(ctx: BenchContext) -> BenchResult:
    budget = ctx.budget(quick=QUICK, full=FULL)
    train_source = source(budget, "train", ctx.seed)
    test = source(budget, "test", ctx.seed).fixed_batches(budget["test_batches"])
    rows = [{"variant": "query (no read)", **query_error(test)}]
    for label, change in VARIANTS:
        memory = build_memory("ebmm-strings", (budget["dim"],), **{**budget["ebmm"], **change})
        train = meta_train(memory, train_source, ctx, budget["steps"], **budget["train"])
        rows.append({"variant": label, **evaluate(memory, test, ctx.device), **train})
        log.info("ebmm-ablations: %s done", label)
    base = rows[1]["hamming"]
    for r in rows:
        r["vs_base"] = r["hamming"] - base
    plot(rows, ctx.figure_path("hamming-by-variant"))
    return BenchResult(
        rows=rows,
        columns=["variant", "hamming", "hamming_ci", "vs_base", "sq_error", "sq_error_ci", "train_seconds"],
        config={
            "preset": ctx.preset,
            **budget,
            "variants": dict(VARIANTS),
            "test_episodes": budget["test_batches"] * budget["batch_size"],
        },
        notes=[
            "hamming: fraction of wrong bits after reading, mean ± 95% CI (t) over test episodes; vs_base: "
            "difference to the base variant (negative = better).",
            "fixed step sizes: read γ(1), η, ψ and write rates frozen at their initial values (papers/001 reports "
            "that a non-meta-learned schedule fails).",
            "Every variant: same training episodes (seed), same number of meta-steps, same test episodes.",
            "maml write: one plain step size λ = 0.5 (papers/001's FC inner lr) on the sum of the three terms.",
            *([QUICK_DEVIATIONS] if ctx.quick else []),
        ],
        title=f"ebmm-ablations: {budget['dim']}-bit strings, T={budget['T']}, {budget['flip']:.0%} flips",
    )
