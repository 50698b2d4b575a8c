"""`engram bench ebmm-strings`: EBMM vs Hopfield on 128-bit ±1 strings (papers/000; issue 4, item 6).

Every model writes the same test episodes of T random ±1 strings (EpisodeSource, split "test") and
reads the same queries with 10% of the bits flipped. EBMM (gated RNN, App. B.1; 8127 writable floats)
is meta-trained per T on the "train" split with the shared Trainer; the classical Hopfield rules
(Hebbian, Storkey, pseudo-inverse; 8128 symmetric weights) need no training; the modern Hopfield store
keeps the T patterns (128·T floats). Hamming error (fraction of wrong bits) vs T, mean ± 95% CI over
test episodes. The paper's binary-string numbers are not readable in our copy: placeholders (None).

Quick preset (2 shared CPU cores, minutes; T = 16, 32, 64: T = 96 is left out of the quick preset, its
800 meta-steps alone would take ≈ 10 min): deviations from the paper, each named in the result notes —
hidden 128 (not 1024), 3 write steps, 800 meta-steps of 4 episodes, AdamW lr 3e-3 (not 5e-5) with clip
1.0 (not 0.05), write rates initialised at 5, 4, 0.2 for the energy, gradient and prior terms (not 1e-4;
a prior-term rate ρ with 2ρβ ≥ 1 makes the write oscillate), γ(1) = 10 (not given by the paper),
memory-layer bias θ̄_b initialised at 2 (He init covers the weights; biases are usually 0), 16 queries per
episode. Why: at init |∇ₓE| ≈ 0.04 per coordinate, so γ(1) ≈ 1 moves a bit by ≈ 0.04 per step (a flipped
bit needs > 1) and Adam moves softplus⁻¹γ(1) by about lr per update; with bias 0, tanh' is even in the
memory pre-activation, ∂E/∂(memory output) is nearly the same for every pattern (cosine 0.77 between
patterns) and the energy-term write only adds the episode's mean pattern to ∇ₓE; bias 2 adds a Hebbian
part (sign agreement of the written ∇ₓE with the stored pattern 0.52 → 0.63 at T = 32, measured at init
after one write step at rate 1).
lr 1e-2 collapses the later read steps (γ(2..5) → ≈ 0) into the "shrink every bit toward 0" optimum of
the MSE loss before the write learns; lr 3e-3 does not. The full preset is the paper's (hidden 1024,
AdamW 5e-5, clip 0.05, rates 1e-4, 2·10⁶ updates).
"""

from __future__ import annotations

import logging

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, evaluate, meta_train, query_error, speed
from engramlab.memories.base import build_memory

log = logging.getLogger(__name__)

DIM = 128
FLIP = 0.1
HEBBIAN_CAPACITY = 0.138 * DIM

BASELINES = [
    ("hebbian", "hopfield-hebbian", {"update": "async", "steps": 20}),
    ("storkey", "hopfield-storkey", {"update": "async", "steps": 20}),
    ("pseudo-inverse", "hopfield-pinv", {"update": "async", "steps": 20}),
    ("modern", "modern-hopfield", {"steps": 1}),
]

QUICK = {
    "T": [16, 32, 64],
    "steps": 800,
    "batch_size": 4,
    "queries": 16,
    "test_batches": 8,
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
QUICK_DEVIATIONS = (
    "Quick preset deviations from papers/000 (named): hidden 128 not 1024; 3 write steps; "
    "800 meta-steps of 4 episodes not 2·10⁶ of 16; AdamW lr 3e-3 not 5e-5; clip 1.0 not 0.05; "
    "initial write rates [5, 4, 0.2] (energy, gradient, prior terms) not 1e-4; initial read step γ(1) = 10; "
    "memory-layer bias initialised at 2 (not 0); 16 queries per episode; T = 96 left out (time). "
    "At the paper's initial values the read is the identity for hundreds of updates "
    "(γ(1)|∇ₓE| ≈ 0.04 per step per coordinate; Adam moves softplus⁻¹γ(1) by ≈ lr per update); with bias 0 "
    "the energy-term write adds only the episode's mean pattern to ∇ₓE (tanh' is even), bias 2 adds a Hebbian part."
)
FULL = {
    "T": [8, 16, 24, 32, 48, 64, 96],
    "steps": 2_000_000,
    "batch_size": 16,
    "queries": None,
    "test_batches": 63,  # ≈ 1000 episodes, as the paper's 1000 random batches [inferred]
    "ebmm": {"hidden_size": 1024, "write_steps": 5, "read_steps": 5},
    "train": dict(PAPER_TRAIN),
}


def source(T: int, B: int, split: str, seed: int, queries: int | None = None) -> EpisodeSource:
    config = DataConfig(
        dataset="binary_strings",
        string_dim=DIM,
        episode_length=T,
        batch_size=B,
        corruption=f"flip:p={FLIP}",
        queries_per_episode=None if queries is None else min(queries, T),
    )
    return EpisodeSource(config, split, seed)


@register_suite("ebmm-strings", "EBMM (gated RNN) vs classical/modern Hopfield on 128-bit strings, 10% flips")
def ebmm_strings(ctx: BenchContext) -> BenchResult:
    budget = QUICK if ctx.quick else FULL
    speed_T = budget["T"][min(1, len(budget["T"]) - 1)]
    rows, timings = [], {}
    curves: dict[str, tuple[list, list, list]] = {}
    for T in budget["T"]:
        test = source(T, budget["batch_size"], "test", ctx.seed, budget["queries"]).fixed_batches(
            budget["test_batches"]
        )
        memory = build_memory("ebmm-strings", (DIM,), **budget["ebmm"])
        train = meta_train(
            memory,
            source(T, budget["batch_size"], "train", ctx.seed, budget["queries"]),
            ctx,
            budget["steps"],
            **budget["train"],
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
        rows.append({"model": "query (no read)", "T": T, **query_error(test), "paper": None})
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
            "train_seconds",
            "paper",
        ],
        config={
            "dim": DIM,
            "flip_probability": FLIP,
            "preset": "quick" if ctx.quick else "full",
            **{k: v for k, v in budget.items()},
            "test_episodes_per_T": budget["test_batches"] * budget["batch_size"],
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
            *([QUICK_DEVIATIONS] if ctx.quick else []),
        ],
        title="ebmm-strings: Hamming error vs stored 128-bit strings (10% flips)",
    )
