"""`engram bench throughput`: every family's training step against this machine's matmul peak (issue 15).

For each family's training step (forward + backward + optimiser update) at its quick size and at its paper
size, on random data of the benchmark's shapes (a step's cost does not depend on the values):

- ``ms_per_step``: median of the timed steps after warm-up;
- ``gflop_per_step``: matmul and convolution GFLOP of one step (forward, backward, EBMM's double backward),
  counted from the shapes of its aten calls by ``engramlab.evaluation.flops.count_flops`` (which says why not
  ``torch.profiler(with_flops=True)``, the count of this suite's first versions); ``gflop_by_kind`` splits it
  into matmul, conv (forward) and conv_backward; ``uncounted_ops`` names matmul-like kernels it does not know;
- ``gflop_per_s`` and ``fraction_of_peak``: against a fp32 1024×1024 matmul timed right before and right
  after the step, in the same process, with the same thread count (median of both sets of repeats);
- ``kernel_ms``: the step's counted matmul and convolution calls replayed back to back on random tensors of their
  shapes and strides (``flops.kernel_seconds``); ``kernel_share`` = kernel_ms / ms_per_step (near 1: the step is
  bound by its matmuls and convolutions; low: by everything else, elementwise work and dispatch);
  ``kernel_fraction_of_peak``: the fraction of peak a step of nothing but those kernels would reach — the ceiling
  of ``fraction_of_peak`` with these kernels at these shapes;
- ``plain_ms_per_step`` and ``speedup_vs_plain``: the same step with the library's fast paths switched off
  (``engramlab.nn.fast.fast_paths(False)``, the code before issue 15), timed in blocks of consecutive steps
  (~0.25 s each) alternating with blocks of the fast step;
- ``allocator_speedup``: ms per step in fresh processes with glibc's default malloc settings over ms per step in
  fresh processes with ``engramlab.nn.fast.keep_freed_memory()`` (which the ``engram`` command and this suite
  switch on), alternated, medians; ``total_speedup`` = ``speedup_vs_plain`` × ``allocator_speedup``, the step
  against the code before issue 15;
- ``batched_vs_loop``: for the batched gradient write (EBMM), a batched meta-step over B = 16 episodes vs a
  Python loop over the same 16 episodes one at a time (loss + backward, alternated, medians);
- ``compiled`` rows: EBMM again with ``memory.compile = true`` (write, read and loss as one ``torch.compile``'d
  function, ``memories/ebmm/compiled.py``): strings in every preset, conv (a compilation of ~15 minutes on this
  CPU at the quick size, more at the paper size) in full only, so that the cpu preset runs in about an hour on this
  2-core machine; MPLP again with ``MPLP(compile=True)`` (its learner cells compiled, 33-71 s) in every preset;
  ``first_step_s`` (every row's first, untimed step) holds the compilation;
- ``target_met``: ``fraction_of_peak`` ≥ 0.3, or ``total_speedup`` ≥ 3 (issue 15's per-family target).

Threads: the quick preset pins one thread (2 shared cores: one thread gives repeatable ratios); cpu and full
use every core. The thread count is recorded in the config and in every row. The quick preset runs a
paper size only where its step takes well under ~5 s on one thread (``PAPER_IN_QUICK``); the full preset runs
every paper size and the per-episode loops at paper size.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.flops import call_seconds, count_flops, kernel_seconds
from engramlab.memories.base import build_memory
from engramlab.nn.fast import adam, fast_paths, fast_paths_enabled, keep_freed_memory

log = logging.getLogger(__name__)

PEAK_SIZE = 1024
TARGET_FRACTION = 0.3
TARGET_SPEEDUP = 3.0
LOOP_EPISODES = 16

# Paper sizes whose step is short enough for the quick preset (measured on one thread of the shared CPU).
PAPER_IN_QUICK = ("modern-hopfield-learned",)
# quick: at least 8 alternated pairs of fast/plain blocks per case (with 3 single-step pairs the fast/plain ratio of a
# 60 ms step moved by ±20%)
# isolate: each case measured in a fresh process (cpu, full): in one process, the heap kept from the paper-size
# EBMM rows (keep_freed_memory) reached 24 GB and the kernel killed the cpu preset at ebmm-conv (paper)
# allocator_rounds: fresh-process pairs (default malloc, kept memory) per case (1 in quick, to leave room for the
# compiled EBMM row's ~3-minute compilation); allocator_steps: timed steps in each
CHILD_SECONDS = 2.0  # and at least this long
MIN_PAIRS, LONG_CASE = 3, 3.0  # timed_pair: fewer than min_blocks pairs (but 3) once 3 × seconds_per_case have passed
SELECTION_KEYS = ("paper", "compiled")  # budget keys that pick the cases (not how they are measured)
BLOCK_SECONDS = 0.25  # timed_pair: consecutive steps of one path before switching to the other
QUICK = {"threads": 1, "warmup": 2, "min_blocks": 8, "max_blocks": 20, "seconds_per_case": 4.0, "peak_repeats": 4,
         "allocator_rounds": 1, "allocator_steps": 3, "loop_repeats": 3, "paper": PAPER_IN_QUICK,
         "loops": {"ebmm-strings": ["quick"]}, "compiled": ("ebmm-strings", "mplp-mnist"), "compiled_loops": False,
         "isolate": False}  # fmt: skip
CPU = {"threads": None, "warmup": 2, "min_blocks": 5, "max_blocks": 20, "seconds_per_case": 15.0, "peak_repeats": 6,
       "allocator_rounds": 2, "allocator_steps": 5, "loop_repeats": 3, "paper": "all",
       "loops": {"ebmm-strings": ["quick"], "ebmm-conv": ["quick"]}, "compiled_loops": True,
       "compiled": ("ebmm-strings", "mplp-mnist"), "isolate": True}  # fmt: skip
FULL = {"threads": None, "warmup": 3, "min_blocks": 5, "max_blocks": 30, "seconds_per_case": 60.0, "peak_repeats": 8,
        "allocator_rounds": 3, "allocator_steps": 5, "loop_repeats": 3, "paper": "all", "compiled_loops": True,
        "compiled": ("ebmm-strings", "ebmm-conv", "mplp-mnist"),
        "loops": {"ebmm-strings": ["quick", "paper"], "ebmm-conv": ["quick", "paper"]}, "isolate": True}  # fmt: skip


# -- the families' training steps --------------------------------------------------------------------------------
@dataclass
class Case:
    """One family at one size: ``make()`` -> (model, batch, optimizer-step settings)."""

    family: str
    size: str  # "quick" or "paper"
    describe: str
    make: Callable[[], tuple[nn.Module, Any, dict[str, Any]]]
    loop: bool = False  # a batched write rule: measure batched vs per-episode loop
    episodes: int = 0
    length: int = 0
    # trains through torch.compile (EBMM's ``compile``, MPLP's): no fresh-process allocator pairs
    compiled: bool = False

    @property
    def name(self) -> str:
        """Its row's name: family (size[, compiled])."""
        return label({"family": self.family, "size": self.size, "compiled": self.compiled})


def _strings(b: int, t: int, n: int, gen: torch.Generator) -> EpisodeBatch:
    x = torch.randint(0, 2, (b, t, 128), generator=gen).float() * 2 - 1
    flip = torch.where(torch.rand(b, n, 128, generator=gen) < 0.1, -1.0, 1.0)
    return EpisodeBatch(patterns=x, queries=x[:, :n] * flip, targets=x[:, :n].clone())


def _images(b: int, t: int, shape: tuple[int, ...], gen: torch.Generator, binary: bool, queries: bool) -> EpisodeBatch:
    x = torch.rand(b, t, *shape, generator=gen)
    x = (x < 0.5).float() if binary else x
    if not queries:
        return EpisodeBatch(patterns=x)
    q = x.clone()
    side = shape[-1] // 2
    q[..., :side, :side] = torch.rand(b, t, shape[0], side, side, generator=gen)  # a noise block
    return EpisodeBatch(patterns=x, queries=q, targets=x.clone())


EBMM_STRINGS = {
    "quick": ({"hidden_size": 128, "write_steps": 3, "read_steps": 5, "read_gamma": 10.0, "memory_bias_init": 2.0,
               "write_rule_options": {"lr_init": [5.0, 4.0, 0.2]}}, 4, 16, 16),
    "paper": ({"hidden_size": 1024, "write_steps": 5, "read_steps": 5}, 16, 32, 32),
}  # fmt: skip
EBMM_CONV = {
    "quick": ({"channels": 16, "hidden_size": 32, "dynamic_size": 8, "write_steps": 2, "read_steps": 3,
               "write_lr": 0.1, "read_gamma": 0.5}, 4, 8),
    "paper": ({"channels": 32, "hidden_size": 128, "dynamic_size": 8, "write_steps": 5, "read_steps": 5}, 16, 16),
}  # fmt: skip
VBM = {  # vbm-images QUICK (binarized MNIST) and FULL (CIFAR-10, App. F)
    "quick": ({"code": 32, "rows": 8, "width": 8, "likelihood": "bernoulli"}, {"vbm-gauss": 10, "vbm-cat": 2},
              8, 16, (1, 28, 28), True),
    "paper": ({"code": 200, "rows": 32, "width": 32, "likelihood": "gaussian"}, {"vbm-gauss": 50, "vbm-cat": 2},
              16, 64, (3, 32, 32), False),
}  # fmt: skip
HOPFIELD = {  # configs/hopfield-learned-digits.toml; the "paper" row is a larger size (no paper gives one)
    "quick": ({"key_dim": 64, "steps": 1, "similarity": "distance"}, 32, 16, (1, 8, 8)),
    "paper": ({"key_dim": 256, "steps": 1, "similarity": "distance"}, 32, 64, (1, 28, 28)),
}  # fmt: skip
MPLP_TASKS = {"quick": 1, "paper": 4}  # mplp-mnist QUICK / FULL tasks per outer step; 144-50-10, 20 steps × 8 shots


def _kanerva_fields(size: str) -> dict[str, dict[str, Any]]:
    from engramlab.evaluation.suites.kanerva_likelihood import FULL as LIK_FULL
    from engramlab.evaluation.suites.kanerva_likelihood import QUICK as LIK_QUICK

    return LIK_QUICK if size == "quick" else LIK_FULL


def cases() -> list[Case]:
    """Every family at its quick and its paper size (built lazily: ``case.make()``)."""
    out: list[Case] = []
    for (size, (fields, b, t, n)), compiled in itertools.product(EBMM_STRINGS.items(), (False, True)):

        def make(fields=fields, b=b, t=t, n=n, compiled=compiled):
            gen = torch.Generator().manual_seed(0)
            memory = build_memory("ebmm-strings", (128,), **fields, compile=compiled)
            return memory, _strings(b, t, n, gen), {"clip": 1.0}

        out.append(
            Case(
                "ebmm-strings",
                size,
                f"hidden {fields['hidden_size']}, write {fields['write_steps']}, read {fields['read_steps']}, N {n}"
                + (", torch.compile" if compiled else ""),
                make,
                loop=True,
                episodes=b,
                length=t,
                compiled=compiled,
            )
        )
    for (size, (fields, b, t)), compiled in itertools.product(EBMM_CONV.items(), (False, True)):

        def make(fields=fields, b=b, t=t, compiled=compiled):
            gen = torch.Generator().manual_seed(0)
            memory = build_memory("ebmm-conv", (1, 32, 32), **fields, compile=compiled)
            return memory, _images(b, t, (1, 32, 32), gen, False, True), {}

        out.append(
            Case(
                "ebmm-conv",
                size,
                f"32×32, channels {fields['channels']}, hidden {fields['hidden_size']}, "
                f"dynamic {fields['dynamic_size']}, write {fields['write_steps']}, read {fields['read_steps']}"
                + (", torch.compile" if compiled else ""),
                make,
                loop=True,
                episodes=b,
                length=t,
                compiled=compiled,
            )
        )
    for name in ("vbm-gauss", "vbm-cat"):
        for size, (fields, iters, b, t, shape, binary) in VBM.items():

            def make(name=name, fields=fields, iters=iters, b=b, t=t, shape=shape, binary=binary):
                gen = torch.Generator().manual_seed(0)
                model = build_memory(name, shape, **fields, iters=iters[name])
                return model, _images(b, t, shape, gen, binary, False), {"betas": (0.0, 0.999), "clip": 100.0}

            out.append(
                Case(
                    name,
                    size,
                    f"{'×'.join(map(str, shape))}, code {fields['code']}, rows {fields['rows']}, "
                    f"width {fields['width']}, {iters[name]} VB iterations",
                    make,
                    episodes=b,
                    length=t,
                )
            )
    for name in ("kanerva++", "dkm"):
        for size in ("quick", "paper"):

            def make(name=name, size=size):
                cfg = _kanerva_fields(size)
                gen = torch.Generator().manual_seed(0)
                model = build_memory(name, (1, 28, 28), **cfg[name], likelihood="bernoulli")
                b, t = cfg["batch_size"], cfg["episode_length"]
                return model, _images(b, t, (1, 28, 28), gen, True, False), {"clip": 10.0}

            cfg = _kanerva_fields(size)
            fields = ", ".join(f"{k} {v}" for k, v in cfg[name].items() if k.endswith(("width", "size", "slots")))
            out.append(
                Case(
                    name,
                    size,
                    f"28×28 binary, {fields}",
                    make,
                    episodes=cfg["batch_size"],
                    length=cfg["episode_length"],
                )
            )
    for size, (fields, b, t, shape) in HOPFIELD.items():

        def make(fields=fields, b=b, t=t, shape=shape):
            gen = torch.Generator().manual_seed(0)
            model = build_memory("modern-hopfield-learned", shape, **fields)
            return model, _images(b, t, shape, gen, False, True), {"clip": 1.0}

        label = "" if size == "quick" else " (no paper size: a larger one)"
        out.append(
            Case(
                "modern-hopfield-learned",
                size,
                f"{'×'.join(map(str, shape))}, key {fields['key_dim']}{label}",
                make,
                episodes=b,
                length=t,
            )
        )
    # MPLP last: the ~2 GB heap its step leaves (kept for reuse, ``keep_freed_memory``) slowed the rows measured
    # after it in the same process (a Hopfield step 1.64 -> 1.72-1.99 ms)
    for (size, tasks), compiled in itertools.product(MPLP_TASKS.items(), (False, True)):
        out.append(
            Case(
                "mplp-mnist",
                size,
                f"144-50-10 GRU 7 msg 4, 20 steps × 8 shots, {tasks} task(s)"
                + (", torch.compile'd learner cells" if compiled else ""),
                lambda tasks=tasks, compiled=compiled: _mplp(tasks, compiled),
                episodes=tasks,
                length=20,
                compiled=compiled,
            )
        )
    return out


def _mplp(tasks: int, compiled: bool = False) -> tuple[nn.Module, Any, dict[str, Any]]:
    from engramlab.rules.mplp.meta import MPLPMetaLearner
    from engramlab.rules.mplp.tasks import MNISTSource

    gen = torch.Generator().manual_seed(0)
    images, labels = torch.rand(1000, 28, 28, generator=gen), torch.randint(0, 10, (1000,), generator=gen)
    source = MNISTSource(20, 8, tasks, patterns=images, labels=labels, seed=0)
    model = MPLPMetaLearner(
        (144, 50, 10), activation="sigmoid", loss="ce", message_size=4, learner="gru", hidden=7, sharing="kind",
        rule_options={"compile": compiled},
    )  # fmt: skip
    return model, source.batch(0), {"optimizer": "adam"}


def make_step(model: nn.Module, batch: Any, settings: dict[str, Any]) -> Callable[[], float]:
    """One training step (loss, backward, clipping, optimiser update) as the trainers do it; returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind, options = ("adam", {"lr": 1e-4}) if settings.get("optimizer") == "adam" else ("adamw", {"lr": 1e-5})
    options["betas"] = settings.get("betas", (0.9, 0.999))
    # one optimiser per path (fused / per-tensor loop), picked at each step as the fast-path switch says
    opts = {}
    for enabled in (True, False):
        with fast_paths(enabled):
            opts[enabled] = adam(params, kind, **options)
    clip = settings.get("clip")
    model.train()

    def step() -> float:
        opt = opts[fast_paths_enabled()]
        loss, _ = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        return float(loss.detach())

    return step


# -- measurements ------------------------------------------------------------------------------------------------
def matmul_seconds(repeats: int, size: int = PEAK_SIZE) -> list[float]:
    """Seconds of ``repeats`` fp32 size×size matmuls (after one untimed)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    return call_seconds(lambda: torch.mm(a, b, out=out), repeats)


def peak_gflops(times: list[float], size: int = PEAK_SIZE) -> float:
    return 2 * size**3 / statistics.median(times) / 1e9


def timed_pair(
    step: Callable[[], Any], warmup: int, min_blocks: int, max_blocks: int, seconds: float
) -> tuple[list[float], list[float]]:
    """Step times with the fast paths on and off after warm-up, in alternating blocks of consecutive steps of
    about ``BLOCK_SECONDS`` each (at least one step): at least ``min_blocks`` pairs of blocks and ``seconds``, at
    most ``max_blocks`` pairs; a step of seconds (MPLP) stops at ``MIN_PAIRS`` pairs once ``LONG_CASE`` ×
    ``seconds`` have passed.

    Blocks, not single steps: a training run's steps follow each other, and a step timed right after the other
    path's runs on the caches that path left (a 1.3 ms Hopfield step took 1.7 ms that way). Alternating blocks
    still shares any drift of the machine's speed between the two paths."""
    for _ in range(warmup):
        step()
        with fast_paths(False):
            step()
    t0 = time.perf_counter()
    step()
    block = max(1, round(BLOCK_SECONDS / max(time.perf_counter() - t0, 1e-6)))
    times: dict[bool, list[float]] = {True: [], False: []}
    start, blocks = time.perf_counter(), 0
    while blocks < max_blocks:
        elapsed = time.perf_counter() - start
        if (blocks >= min_blocks and elapsed >= seconds) or (blocks >= MIN_PAIRS and elapsed >= LONG_CASE * seconds):
            break
        for enabled in (True, False):
            with fast_paths(enabled):
                for _ in range(block):
                    t0 = time.perf_counter()
                    step()
                    times[enabled].append(time.perf_counter() - t0)
        blocks += 1
    return times[True], times[False]


def batched_vs_loop(model: nn.Module, batch: EpisodeBatch, repeats: int) -> dict[str, float]:
    """A meta-step (loss + backward) over B episodes vs a Python loop over the same B episodes one at a time;
    alternated ``repeats`` times, medians."""
    one = [
        EpisodeBatch(
            patterns=batch.patterns[i : i + 1], queries=batch.queries[i : i + 1], targets=batch.targets[i : i + 1]
        )
        for i in range(batch.num_episodes)
    ]

    def meta_step(b: EpisodeBatch) -> None:
        loss, _ = model.loss(b)
        loss.backward()

    model.train()
    meta_step(batch), meta_step(one[0])  # warm-up
    batched, looped = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        meta_step(batch)
        batched.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for b in one:
            meta_step(b)
        looped.append(time.perf_counter() - t0)
    model.zero_grad(set_to_none=True)
    return {
        "loop_episodes": batch.num_episodes,
        "batched_ms": 1000 * statistics.median(batched),
        "loop_ms": 1000 * statistics.median(looped),
        "batched_vs_loop": statistics.median(looped) / statistics.median(batched),
    }


def child_ms_per_step(family: str, size: str, keep: str, threads: str, warmup: str, steps: str) -> float:
    """Median ms per step of one case in this (fresh) process, with ``keep_freed_memory()`` or glibc's defaults:
    at least ``steps`` timed steps and ``CHILD_SECONDS`` of them (a 1.5 ms step needs hundreds for a stable median)."""
    torch.set_num_threads(int(threads))
    if keep == "True":
        keep_freed_memory()
    torch.manual_seed(0)
    step = make_step(*_case(family, size, False).make())
    for _ in range(int(warmup) + 1):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < int(steps) or (time.perf_counter() - start < CHILD_SECONDS and len(times) < 1000):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


_CHILD = (
    "import sys; from engramlab.evaluation.suites.throughput import child_ms_per_step as f; print(f(*sys.argv[1:]))"
)


def _case(family: str, size: str, compiled: bool) -> Case:
    """The case of ``cases()`` with this key (what a child process rebuilds from its arguments)."""
    (case,) = [c for c in cases() if (c.family, c.size, c.compiled) == (family, size, compiled)]
    return case


def _run_child(code: str, args: list[str], what: str) -> str:
    """Run ``python -c code *args`` in a fresh process; its last line of output (a RuntimeError naming ``what``
    when it fails)."""
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        why = "killed by the kernel (out of memory?)" if out.returncode in (-9, 137) else out.stderr[-500:]
        raise RuntimeError(f"throughput: the child process measuring {what} failed: {why}")
    return out.stdout.strip().splitlines()[-1]


def allocator_pair(case: Case, threads: int, warmup: int, steps: int, rounds: int) -> dict[str, float]:
    """ms per step in fresh processes with glibc's default malloc and with kept freed memory, alternated
    ``rounds`` times (a process cannot go back to the default once it has changed it); medians."""
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for keep in (False, True):
            args = [case.family, case.size, str(keep), str(threads), str(warmup), str(steps)]
            times[keep].append(float(_run_child(_CHILD, args, case.name)))
    default, kept = statistics.median(times[False]), statistics.median(times[True])
    return {"default_malloc_ms": default, "kept_memory_ms": kept, "allocator_speedup": default / kept}


def measure(case: Case, budget: dict[str, Any], loop: bool) -> dict[str, Any]:
    """One row: build the case, count its FLOPs, time it (and its plain path) between two peak measurements."""
    torch.manual_seed(0)
    model, batch, settings = case.make()
    step = make_step(model, batch, settings)
    start = time.perf_counter()
    step()  # first call (lazy init, allocator; the compilation of a compiled case)
    first_step = time.perf_counter() - start
    flops = count_flops(step)
    kernels = kernel_seconds(flops)
    peak_before = matmul_seconds(budget["peak_repeats"])
    fast, plain = timed_pair(
        step, budget["warmup"], budget["min_blocks"], budget["max_blocks"], budget["seconds_per_case"]
    )
    peak_after = matmul_seconds(budget["peak_repeats"])
    peak = peak_gflops(peak_before + peak_after)
    seconds = statistics.median(fast)
    row: dict[str, Any] = {
        "family": case.family,
        "size": case.size,
        "B": case.episodes,
        "T": case.length,
        "ms_per_step": 1000 * seconds,
        "timed_steps": len(fast),
        "gflop_per_step": flops.total / 1e9,
        "gflop_per_s": flops.total / 1e9 / seconds,
        "peak_gflop_per_s": peak,
        "fraction_of_peak": flops.total / 1e9 / seconds / peak,
        "kernel_ms": 1000 * kernels,
        "kernel_share": kernels / seconds,
        "kernel_fraction_of_peak": flops.total / 1e9 / kernels / peak if kernels > 0 else None,
        "plain_ms_per_step": 1000 * statistics.median(plain),
        "speedup_vs_plain": statistics.median(plain) / seconds,
        "batched_vs_loop": None,
        "plain_batched_vs_loop": None,
        "gflop_by_kind": {kind: value / 1e9 for kind, value in sorted(flops.by_kind.items())},
        "uncounted_ops": sorted(flops.uncounted),
        "compiled": case.compiled,
        "first_step_s": first_step,
        "threads": torch.get_num_threads(),
        "describe": case.describe,
    }
    if loop and case.loop:
        gen = torch.Generator().manual_seed(1)
        fields = (EBMM_STRINGS if case.family == "ebmm-strings" else EBMM_CONV)[case.size]
        if case.family == "ebmm-strings":
            loop_batch = _strings(LOOP_EPISODES, 32 if case.size == "quick" else case.length, fields[3], gen)
        else:
            loop_batch = _images(LOOP_EPISODES, case.length, (1, 32, 32), gen, False, True)
        speed = batched_vs_loop(model, loop_batch, budget["loop_repeats"])
        row["batched_vs_loop"] = speed["batched_vs_loop"]
        row["loop"] = {**speed, "T": loop_batch.episode_length}
        with fast_paths(False):
            plain_speed = batched_vs_loop(model, loop_batch, budget["loop_repeats"])
        row["plain_batched_vs_loop"] = plain_speed["batched_vs_loop"]
        row["loop"]["plain"] = plain_speed
    row.update(default_malloc_ms=None, kept_memory_ms=None, allocator_speedup=None)
    if budget["allocator_rounds"] and not case.compiled:  # a child would compile anew
        threads = torch.get_num_threads()
        rounds, steps = budget["allocator_rounds"], budget["allocator_steps"]
        row.update(allocator_pair(case, threads, budget["warmup"], steps, rounds))
    row["total_speedup"] = row["speedup_vs_plain"] * (row["allocator_speedup"] or 1.0)
    row["target_met"] = row["fraction_of_peak"] >= TARGET_FRACTION or row["total_speedup"] >= TARGET_SPEEDUP
    return row


def label(row: dict[str, Any]) -> str:
    """A row's name in figures and notes: family (size[, compiled])."""
    return f"{row['family']} ({row['size']}{', compiled' if row.get('compiled') else ''})"


def measure_in_child(case: Case, budget: dict[str, Any], loop: bool, threads: int) -> dict[str, Any]:
    """``measure`` in a fresh process (the case rebuilt there from ``cases()``): no heap, caches or compiled code
    left by the rows before it; the row comes back as JSON on the child's last line of output."""
    spec = {"family": case.family, "size": case.size, "compiled": case.compiled, "loop": loop, "threads": threads}
    return json.loads(_run_child(_MEASURE_CHILD, [json.dumps(spec), json.dumps(budget)], case.name))


def _measure_child(spec_json: str, budget_json: str) -> None:
    spec, budget = json.loads(spec_json), json.loads(budget_json)
    torch.set_num_threads(spec["threads"])
    keep_freed_memory()  # as the engram command (and the parent) does
    case = _case(spec["family"], spec["size"], spec["compiled"])
    print(json.dumps(measure(case, budget, spec["loop"])))


_MEASURE_CHILD = "import sys; from engramlab.evaluation.suites.throughput import _measure_child as f; f(*sys.argv[1:])"


def run_cases(
    ctx_budget: dict[str, Any],
    selected: list[Case],
    progress: Callable[[str], None] | None = None,
    work_dir: Path | None = None,
    resume: bool = False,
):
    """Measure ``selected`` cases under ``ctx_budget``; returns the rows (threads set and restored here).

    ``isolate`` in the budget measures each case in a fresh process. With ``work_dir`` each finished row is
    appended to ``work_dir/rows.jsonl`` (emptied by a run without ``resume``); ``resume`` keeps the rows found there
    that were measured under the same budget (its keys other than ``SELECTION_KEYS``) and measures only the others,
    so a long preset stopped part-way continues where it stopped."""
    threads_before = torch.get_num_threads()
    threads = ctx_budget["threads"] or os.cpu_count() or 1
    torch.set_num_threads(threads)
    saved = work_dir / "rows.jsonl" if work_dir is not None else None
    # the keys that only select cases do not change how a row is measured
    measured = {k: v for k, v in ctx_budget.items() if k not in SELECTION_KEYS}
    budget_key = json.dumps(measured, sort_keys=True, default=str)
    done: dict[str, dict[str, Any]] = {}
    if saved is not None:
        if resume and saved.exists():
            for line in saved.read_text().splitlines():
                entry = json.loads(line)
                if entry["budget"] == budget_key:
                    done[label(entry["row"])] = entry["row"]
        saved.parent.mkdir(parents=True, exist_ok=True)
        if not resume:  # a fresh run; a resumed one keeps every saved line (rows of other budgets are ignored)
            saved.write_text("")
    rows = []
    try:
        for case in selected:
            if case.name in done:
                rows.append(done[case.name])
                if progress is not None:
                    progress(f"{case.name}: kept from the interrupted run (--resume)")
                continue
            start = time.perf_counter()
            loop = case.size in ctx_budget["loops"].get(case.family, [])
            # a compiled loop compiles twice more (B = 16 at T = 32, and B = 1): not in the quick preset
            loop = loop and (not case.compiled or ctx_budget["compiled_loops"])
            if ctx_budget.get("isolate"):
                rows.append(measure_in_child(case, ctx_budget, loop, threads))
            else:
                rows.append(measure(case, ctx_budget, loop))
            rows[-1]["case_seconds"] = time.perf_counter() - start
            if saved is not None:
                with saved.open("a") as f:
                    f.write(json.dumps({"budget": budget_key, "row": rows[-1]}) + "\n")
            if progress is not None:
                progress(
                    f"{label(rows[-1])}: {rows[-1]['ms_per_step']:.0f} ms/step, "
                    f"{100 * rows[-1]['fraction_of_peak']:.1f}% of peak"
                )
    finally:
        torch.set_num_threads(threads_before)
    return rows


COLUMNS = [
    "family",
    "size",
    "compiled",
    "B",
    "T",
    "ms_per_step",
    "first_step_s",
    "gflop_per_step",
    "gflop_per_s",
    "peak_gflop_per_s",
    "fraction_of_peak",
    "kernel_share",
    "kernel_fraction_of_peak",
    "plain_ms_per_step",
    "speedup_vs_plain",
    "allocator_speedup",
    "total_speedup",
    "batched_vs_loop",
    "plain_batched_vs_loop",
    "target_met",
]


@register_suite("throughput", "every family's training step: ms, matmul GFLOP/s, fraction of a fp32 matmul peak")
def throughput(ctx: BenchContext) -> BenchResult:
    budget = ctx.budget(quick=QUICK, cpu=CPU, full=FULL)
    kept = keep_freed_memory()  # as the engram command does; measured against glibc's defaults per row
    every = cases()
    selected = [c for c in every if c.size == "quick" or budget["paper"] == "all" or c.family in budget["paper"]]
    selected = [c for c in selected if not c.compiled or c.family in budget["compiled"]]
    skipped = [c.name for c in every if c not in selected]

    def progress(line: str) -> None:
        log.info("throughput: %s", line)
        if ctx.progress:
            print(f"throughput: {line}", flush=True)

    rows = run_cases(budget, selected, progress, ctx.work_dir, ctx.resume)
    from engramlab.viz import plot_bars

    labels = [label(r) for r in rows]
    plot_bars(
        labels,
        [r["fraction_of_peak"] for r in rows],
        None,
        ctx.figure_path("fraction-of-peak"),
        "fraction of a fp32 1024² matmul peak (same run, same threads)",
        reference=(TARGET_FRACTION, f"target {TARGET_FRACTION:.0%}"),
        title="throughput: training steps",
    )
    loops = {label(r): r["loop"] for r in rows if r.get("loop")}
    notes = [
        f"Threads: {rows[0]['threads'] if rows else '–'} (set by the suite; cpu_count {os.cpu_count()}). "
        "A step = loss + backward + clipping + optimiser update on random data of the benchmark's shapes. "
        f"The rows took {sum(r['case_seconds'] for r in rows) / 60:.1f} min to measure (case_seconds; a run resumed "
        "with --resume included).",
        "gflop_per_step: matmul and convolution FLOPs of the step (forward, backward, double backward) from the shapes "
        "of its aten calls (engramlab.evaluation.flops; 2 per product-sum, padding taps included, transposed and "
        "grouped convolutions counted as such). "
        "Elementwise work is not counted, so steps bound by it show a low fraction of peak.",
        "kernel_share: the step's counted matmul/convolution calls replayed back to back on random tensors of their "
        "shapes and strides (inputs in cache), over ms_per_step; kernel_fraction_of_peak: the fraction of peak a step "
        "of only those kernels would reach (the ceiling of fraction_of_peak with these kernels at these shapes).",
        "peak_gflop_per_s: fp32 1024² matmul, median of repeats timed right before and after the row's steps.",
        "plain_ms_per_step / speedup_vs_plain: the same step with engramlab.nn.fast.fast_paths(False) (the code "
        "before issue 15: per-tensor Adam loop, EBMM's unfused hops), timed in blocks of consecutive steps (~"
        f"{BLOCK_SECONDS:g} s, at least one step) alternating with blocks of the fast path (fused Adam / "
        "AdamW for every family; EBMM's fused hops) in the same process; ms_per_step: the fast path's steps so timed.",
        f"batched_vs_loop: meta-step (loss + backward) over B = {LOOP_EPISODES} episodes vs a loop over them one "
        "at a time (ebmm-strings at T = 32 as in ebmm-strings' speed; ebmm-conv at its T), medians, alternated.",
        f"allocator_speedup: ms per step in fresh processes with glibc's default malloc over ms per step in fresh "
        f"processes with engramlab.nn.fast.keep_freed_memory() ({budget['allocator_rounds']} alternated pairs, each "
        f"timing at least {budget['allocator_steps']} steps and {CHILD_SECONDS:g} s after warm-up; medians); "
        f"this process: kept memory {'on' if kept else 'off'}. "
        "total_speedup = speedup_vs_plain × allocator_speedup.",
        "compiled rows: the same case with memory.compile = true (EBMM: write, read and loss as one torch.compile'd "
        "function, memories/ebmm/compiled.py) or MPLP(compile=True) (each weight learner's cell_parts "
        "through torch.compile, rules/mplp/protocol.py); first_step_s holds its compilation (every row's "
        "first_step_s is its first, untimed step); its plain step runs without compilation; no allocator pairs "
        "(each child process would compile anew), so total_speedup = speedup_vs_plain.",
        f"target_met: fraction_of_peak ≥ {TARGET_FRACTION} or total_speedup ≥ {TARGET_SPEEDUP} (issue 15).",
    ]
    if skipped:
        notes.append(
            "Not in this preset (a step, or a compiled row's compilation, takes too long for it on this CPU): "
            f"{', '.join(skipped)}."
        )
    return BenchResult(
        rows=rows,
        columns=COLUMNS,
        config={
            **{k: list(v) if isinstance(v, tuple) else v for k, v in budget.items()},
            "threads_used": rows[0]["threads"] if rows else None,
            "peak_size": PEAK_SIZE,
            "loop_episodes": LOOP_EPISODES,
        },  # fmt: skip
        extra={"loops": loops, "describe": {label(r): r["describe"] for r in rows}},
        notes=notes,
        title=f"throughput ({ctx.preset} preset): training steps vs a fp32 matmul peak",
    )
