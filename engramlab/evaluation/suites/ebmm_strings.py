"""`engram bench ebmm-strings`: EBMM vs Hopfield on 128-bit ±1 strings (papers/000; issue 4, item 6).

Every model writes the same test episodes of T random ±1 strings (EpisodeSource, split "test") and
reads the same queries with 10% of the bits flipped. EBMM (gated RNN, App. B.1; 8127 writable floats)
is meta-trained per T on the "train" split with the shared Trainer; the classical Hopfield rules
(Hebbian, Storkey, pseudo-inverse; 8128 symmetric weights) need no training; the modern Hopfield store
keeps the T patterns (128·T floats). Hamming error (fraction of wrong bits) vs T, mean ± 95% CI over
test episodes. The paper's binary-string numbers are not readable in our copy: placeholders (None).

Presets. quick and cpu: EBMM climbs the ``ebmm-ladder`` curriculum of the same preset (T = 1, 2, 4, 8,
16, 32, each rung from the previous one's best state) in the ladder's checkpoint folder, so after
``engram bench ebmm-ladder --preset cpu`` this suite only evaluates; T = 64 is read with the T = 32
state, untrained at 64. The ladder's docstring names its deviations from papers/000 (hidden 128, 3 write
steps, Adam 1e-3 with clip 1, write rates 1, α = 0.2, β = 0.05, γ(1) = 5, scalar step sizes meta-learned
3× faster, the writing loss summed over the patterns) and issue 12's note gives their measured effect.
The previous quick preset (from scratch per T, 800 meta-steps, γ(1) = 10, memory bias 2, AdamW 3e-3)
left EBMM at the query's own error (0.090 / 0.097 / 0.101 at T = 16 / 32 / 64). full: the paper's
settings (hidden 1024, AdamW 5e-5, clip 0.05, rates 1e-4, 2·10⁶ updates), one model per T.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites import ebmm_ladder
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, evaluate, meta_train, query_error, speed
from engramlab.evaluation.suites.ebmm_ladder import DIM, FLIP, source
from engramlab.memories.base import Memory, build_memory

log = logging.getLogger(__name__)

HEBBIAN_CAPACITY = 0.138 * DIM

BASELINES = [*ebmm_ladder.BASELINES, ("modern", "modern-hopfield", {"steps": 1})]

QUICK = {
    "T": [16, 32, 64],
    "ladder": True,  # EBMM climbs the ebmm-ladder curriculum of the same preset
    "queries": 16,
    "test_batch_size": 16,
    "test_batches": 4,
}
CPU = {**QUICK, "test_batches": 8}
QUICK_DEVIATIONS = (
    "quick/cpu: EBMM is the ebmm-ladder's curriculum of the same preset (quick T = 1 … 32, cpu T = 1 … 64; the "
    "ladder's notes name its deviations from papers/000: hidden 128, 3 write steps, Adam 1e-3, clip 1, write rates 1, "
    "α = 0.2, β = 0.05, γ(1) = 5, rate_lr_scale 3, the writing loss summed over patterns); a T beyond the preset's "
    "last rung is read with the last rung's state, untrained at that T (column trained_at_T)."
)
FULL = {
    "T": [8, 16, 24, 32, 48, 64, 96],
    "steps": 2_000_000,
    "batch_size": 16,
    "test_batch_size": 16,
    "queries": None,
    "test_batches": 63,  # ≈ 1000 episodes, as the paper's 1000 random batches [inferred]
    "ebmm": {"hidden_size": 1024, "write_steps": 5, "read_steps": 5},
    "train": dict(PAPER_TRAIN),
}


def trained_ebmm(ctx: BenchContext, budget: dict) -> Iterator[tuple[int, Memory, dict]]:
    """(T, trained EBMM, training record) for each T of the budget.

    quick/cpu: EBMM climbs the ``ebmm-ladder`` curriculum of the same preset (T = 1, 2, 4, … 32), in the
    ladder's own checkpoint folder, so a ladder already run is reused and not retrained; a T beyond the
    last rung is read with the last rung's state (untrained at that T). full: one model per T from
    scratch at the paper's settings."""
    if not budget.get("ladder"):
        for T in budget["T"]:
            memory = build_memory("ebmm-strings", (DIM,), **budget["ebmm"])
            train = meta_train(
                memory,
                source(T, budget["batch_size"], "train", ctx.seed, budget["queries"]),
                ctx,
                budget["steps"],
                **budget["train"],
            )
            yield T, memory, train
        return
    ladder = ebmm_ladder.QUICK if ctx.preset == "quick" else ebmm_ladder.CPU
    work_dir = ctx.out_dir.parent / "ebmm-ladder" / f"{ctx.preset}-work"
    states = {}
    for T, memory, train in ebmm_ladder.climb(ladder, ctx, work_dir=work_dir, resume=True):
        states[T] = (memory, {"train_steps": train["train_steps"], "train_seconds": train["train_seconds"]})
    last = max(states)
    for T in budget["T"]:
        memory, train = states.get(T, states[last])
        yield T, memory, {**train, "trained_at_T": T if T in states else last}


@register_suite("ebmm-strings", "EBMM (gated RNN) vs classical/modern Hopfield on 128-bit strings, 10% flips")
def ebmm_strings(ctx: BenchContext) -> BenchResult:
    budget = ctx.budget(quick=QUICK, cpu=CPU, full=FULL)
    speed_T = budget["T"][min(1, len(budget["T"]) - 1)]
    rows, timings = [], {}
    curves: dict[str, tuple[list, list, list]] = {}
    for T, memory, train in trained_ebmm(ctx, budget):
        test = source(T, budget["test_batch_size"], "test", ctx.seed, budget["queries"]).fixed_batches(
            budget["test_batches"]
        )
        stats = evaluate(memory, test, ctx.device)
        rows.append({"model": "ebmm", "T": T, **stats, "memory_floats": memory.memory_floats(), **train, "paper": None})
        if T == speed_T:
            timings = speed(memory, source(T, 16, "val", ctx.seed, budget["queries"]).batch(0), ctx.device)
        for label, name, fields in BASELINES:
            baseline = build_memory(name, (DIM,), **fields).to(ctx.device)
            stats = evaluate(baseline, test, ctx.device)
            rows.append(
                {
                    "model": label,
                    "T": T,
                    **stats,
                    "memory_floats": baseline.memory_floats(episode_length=T),
                    "exceeds_ebmm_floats": baseline.memory_floats(episode_length=T) > memory.memory_floats(),
                    "paper": None,
                }
            )
        rows.append({"model": "query (no read)", "T": T, **query_error(test)})
        log.info("ebmm-strings: T=%d done", T)
    for r in rows:
        c = curves.setdefault(r["model"], ([], [], []))
        c[0].append(r["hamming"]), c[1].append(r["hamming_ci"]), c[2].append(r["T"])

    from engramlab.viz import plot_curves

    plot_curves(
        None,
        curves,
        ctx.figure_path("hamming-vs-T"),
        xlabel="stored patterns T (128-bit strings)",
        ylabel="Hamming error after reading (fraction of bits)",
        vline=(HEBBIAN_CAPACITY, "Hebbian capacity 0.138·128"),
        title="ebmm-strings: 10% flipped bits",
    )
    above = [T for T in budget["T"] if T > HEBBIAN_CAPACITY]
    wins = {
        T: all(
            next(r["hamming"] for r in rows if r["model"] == "ebmm" and r["T"] == T)
            < next(r["hamming"] for r in rows if r["model"] == b and r["T"] == T)
            for b in ("hebbian", "storkey", "pseudo-inverse")
        )
        for T in above
    }
    beats_query = {
        T: next(r["hamming"] for r in rows if r["model"] == "ebmm" and r["T"] == T)
        < next(r["hamming"] for r in rows if r["model"] == "query (no read)" and r["T"] == T)
        for T in budget["T"]
    }
    return BenchResult(
        rows=rows,
        columns=[
            "model",
            "T",
            "hamming",
            "hamming_ci",
            "sq_error",
            "sq_error_ci",
            "memory_floats",
            "exceeds_ebmm_floats",
            "train_steps",
            "trained_at_T",
            "train_seconds",
            "paper",
        ],
        config={
            "dim": DIM,
            "flip_probability": FLIP,
            "preset": ctx.preset,
            **{k: v for k, v in budget.items()},
            "test_episodes_per_T": budget["test_batches"] * budget["test_batch_size"],
            "baselines": [{"label": a, "memory": b, **c} for a, b, c in BASELINES],
        },
        extra={
            "speed": timings,
            "target_ebmm_below_classical_above_capacity": wins,
            "ebmm_below_query": beats_query,
        },
        notes=[
            "hamming: fraction of wrong bits (reads binarised at 0), mean ± 95% CI (t) over test episodes; "
            "sq_error: Σ_d (read − target)², mean over queries.",
            "Memory floats: EBMM 8127 writable (Linear(128, 63)); classical 8128 (128·127/2); modern 128·T.",
            f"Target (issue 4): EBMM below every classical rule once T > {HEBBIAN_CAPACITY:.1f}: {wins}.",
            "Paper column: None (the binary-string numbers of papers/000 are not readable in our copy).",
            f"EBMM below the query's own error (the read helps): {beats_query}. Where EBMM wins above capacity "
            "but not against the query, it wins only because the classical rules make reads worse than no read.",
            "exceeds_ebmm_floats: the modern store (128·T floats) is larger than EBMM's 8127 from T = 64 on.",
            f"Speed (extra.speed): B = 16 episodes at T = {speed_T}, batched meta-step vs a Python loop "
            "over the 16 episodes (same model, same code path).",
            *([QUICK_DEVIATIONS] if ctx.preset != "full" else []),
        ],
        title="ebmm-strings: Hamming error vs stored 128-bit strings (10% flips)",
    )
