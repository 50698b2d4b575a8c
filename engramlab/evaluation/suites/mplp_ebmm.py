"""`engram bench mplp-ebmm`: EBMM written by the MPLP rule vs by its gradient rule (issue 7, item 5).

Both memories are the same "ebmm-strings" energy network (gated RNN, App. B.1 of papers/000) with the
same writable layers (same memory size), the same number of write steps, the same meta-training
budget with the shared Trainer (ebmm_common.meta_train) and the same seeded train/test episodes of
128-bit ±1 strings read back from queries with 10% flipped bits. Only the write rule differs: the
meta-learned per-layer/per-term gradient rates ("gradient") or the learned per-synapse MPLP update rule
on gradient messages ("mplp", engramlab/rules/mplp/write_rule.py). Hamming error ± 95% CI over episodes.
The quick budget is issue 4's ebmm-strings quick settings (hidden 128, 3 write steps, 5 read steps, γ(1) = 10,
memory-layer bias 2, AdamW 3e-3, clip 1) at T = 16 with 300 meta-steps for both rules.
"""

from __future__ import annotations

import logging

from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites.ebmm_common import evaluate, meta_train, query_error
from engramlab.evaluation.suites.ebmm_strings import DIM, source
from engramlab.evaluation.suites.ebmm_strings import FULL as STRINGS_FULL
from engramlab.memories.base import build_memory
from engramlab.viz import plot_bars

log = logging.getLogger(__name__)
# One meta-step of the MPLP-written EBMM costs 2.4x (quick run) to ~4x the gradient-written one on CPU (every
# writable float runs through the learner, second order): the quick budget cuts ebmm-strings' 800 quick steps to 300
# for BOTH rules (where the gradient-written EBMM has just started to read below the query; full = paper's budget).
QUICK = {
    "T": [16],
    "steps": 300,
    "batch_size": 4,
    "queries": 16,
    "test_batches": 8,
    # the ebmm-strings quick settings of issue 4 (the committed results/mplp-ebmm were run with them); ebmm-strings
    # itself now climbs the ebmm-ladder curriculum, which a single-T comparison of two rules does not need
    "ebmm": {
        "hidden_size": 128,
        "write_steps": 3,
        "read_steps": 5,
        "read_gamma": 10.0,
        "memory_bias_init": 2.0,
        "write_rule_options": {"lr_init": [5.0, 4.0, 0.2]},
    },
    "train": {"lr": 3e-3, "clip_norm": 1.0},
}
FULL = dict(STRINGS_FULL)
RULES = [("gradient", {}), ("mplp", {"write_rule_options": {"learner": "mlp"}})]


def plot(rows: list[dict], path) -> None:
    """Hamming error per write rule and T with its 95% CI (the query's own error is a bar too)."""
    plot_bars(
        [f"{r['write_rule']} (T={r['T']})" for r in rows],
        [r["hamming"] for r in rows],
        [r["hamming_ci"] for r in rows],
        path,
        "Hamming error after reading (lower is better)",
        title="EBMM written by MPLP vs the gradient rule",
    )


@register_suite("mplp-ebmm", "EBMM on 128-bit strings written by the MPLP rule vs the gradient rule (equal steps/size)")
def mplp_ebmm(ctx: BenchContext) -> BenchResult:
    budget = ctx.budget(quick=QUICK, full=FULL)
    rows = []
    for T in budget["T"]:
        test = source(T, budget["batch_size"], "test", ctx.seed).fixed_batches(budget["test_batches"])
        rows.append({"write_rule": "query (no read)", "T": T, **query_error(test)})
        for rule, fields in RULES:
            memory = build_memory("ebmm-strings", (DIM,), **{**budget["ebmm"], **fields}, write_rule=rule)
            train = meta_train(
                memory, source(T, budget["batch_size"], "train", ctx.seed), ctx, budget["steps"], **budget["train"]
            )
            stats = evaluate(memory, test, ctx.device)
            rows.append(
                {
                    "write_rule": rule,
                    "T": T,
                    **stats,
                    "memory_floats": memory.memory_floats(),
                    "rule_params": sum(p.numel() for p in memory.rule.parameters()),
                    **train,
                }
            )
            log.info("mplp-ebmm: T=%d %s done", T, rule)
    plot(rows, ctx.figure_path("hamming-by-rule"))
    return BenchResult(
        rows=rows,
        columns=[
            "write_rule",
            "T",
            "hamming",
            "hamming_ci",
            "sq_error",
            "sq_error_ci",
            "memory_floats",
            "rule_params",
            "train_steps",
            "train_seconds",
            "final_train_loss",
        ],
        config={**budget, "test_episodes_per_T": budget["test_batches"] * budget["batch_size"], "rules": RULES},
        notes=[
            "Same energy network, writable layers, write steps, meta-training budget and episodes for both rules.",
            "The MPLP write rule learns f only; its messages are the back-propagated gradients of the writing loss "
            "terms (the objective is a black box to a write rule), see engramlab/rules/mplp/write_rule.py.",
            "No paper number exists for this comparison (new in this project).",
        ],
        title="EBMM written by MPLP vs gradient rule: Hamming error on 128-bit strings (10% flips)",
    )
