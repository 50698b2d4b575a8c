"""Shared pieces of the EBMM benchmarks (issue 4, item 6): meta-train with the one Trainer, evaluate
on fixed episodes, time batched vs per-episode meta-steps, and measure a second-order step's memory.

Not a suite itself (it registers nothing).
"""

from __future__ import annotations

import resource
import shutil
import time
from typing import Any

import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import hamming_error, squared_error, summarize
from engramlab.memories.base import Memory
from engramlab.training import TrainConfig, Trainer

# AdamW 5e-5, weight decay 1e-6, global-norm clip 0.05 (papers/000, App. D)
PAPER_TRAIN = {"optimizer": "adamw", "lr": 5e-5, "weight_decay": 1e-6, "clip_norm": 0.05}


def meta_train(
    memory: Memory, source: Any, ctx: BenchContext, steps: int, name: str | None = None, **train: Any
) -> dict[str, float]:
    """Meta-train ``memory`` for ``steps`` updates on ``source`` with the shared Trainer; returns timings.

    With ``name``, the run is checkpointed under ``ctx.work_dir/name`` (every tenth of the run) and
    ``engram bench ... --resume`` continues it (without --resume an earlier run there is replaced)."""
    fields = {**PAPER_TRAIN, **train}
    every = max(1, steps // 10)
    out_dir = None
    if name is not None:
        out_dir = ctx.work_dir / name
        if not ctx.resume and out_dir.exists():
            shutil.rmtree(out_dir)
    config = TrainConfig(
        steps=steps, log_every=every, checkpoint_every=every if out_dir else 0, keep_last=1, tensorboard=False, **fields
    )
    trainer = Trainer(
        memory,
        source,
        config,
        out_dir=out_dir,
        device=ctx.device,
        progress=ctx.progress,
        seed=ctx.seed,
        resume=ctx.resume and out_dir is not None,
        handle_signals=False,
    )
    result = trainer.fit()
    # the whole run's wall time: a --resume that only evaluates must not report the seconds of this call
    return {"train_steps": result.step, "train_seconds": result.run_wall_seconds, "final_train_loss": result.loss}


def evaluate(
    memory: Memory, batches: list[EpisodeBatch], device: torch.device, signed: bool = False
) -> dict[str, float]:
    """Squared and Hamming error of reads over the fixed batches: mean ± 95% CI over episodes (``errors``)."""
    return summarize(errors(memory, batches, device, signed))


def errors(
    memory: Memory, batches: list[EpisodeBatch], device: torch.device, signed: bool = False
) -> dict[str, torch.Tensor]:
    """Per-episode squared and Hamming error of reads over the fixed batches: {"sq_error", "hamming"} (episodes,).

    Hamming binarises at 0 for ±1 strings and at 0.5 for [0, 1] images (``metrics.hamming_error``).
    ``signed=True``: [0, 1] images are given to the memory as 2x − 1 and its reads mapped back
    (classical Hopfield nets need ±1 patterns); errors are always in the images' [0, 1] scale.
    """
    memory.eval()
    sq, ham = [], []
    for batch in batches:
        batch = batch.to(device)
        with torch.no_grad():
            if signed:
                read = (memory.read(2 * batch.queries - 1, memory.write(2 * batch.patterns - 1)) + 1) / 2
            else:
                read = memory.read(batch.queries, memory.write(batch.patterns))
        sq.append(squared_error(read, batch.targets).cpu())
        ham.append(hamming_error(read, batch.targets).cpu())
    memory.train()
    return {"sq_error": torch.cat(sq), "hamming": torch.cat(ham)}


def memory_use(memory: Any, batches: list[EpisodeBatch], device: torch.device) -> dict[str, float]:
    """Does an EBMM's read depend on what was written? Squared error of the same queries read with the
    episode's own written weights (``own``, the same as ``evaluate``'s sq_error), with those of the next
    episode in the batch (``swap``) and with the unwritten meta-learned θ̄ (``unwritten``); ``swap_gap`` =
    swap − own per episode (≈ 0: the read does not use the memory, whatever its error). Mean ± 95% CI
    over episodes."""
    from engramlab.memories.ebmm.diagnostics import swapped_state
    from engramlab.memories.ebmm.memory import EBMMState

    memory.eval()
    out: dict[str, list[torch.Tensor]] = {"own": [], "swap": [], "unwritten": []}
    for batch in batches:
        batch = batch.to(device)
        state = memory.write(batch.patterns)
        anchor = memory.energy_net.initial_fast(batch.patterns.shape[0])
        states = {
            "own": state,
            "swap": swapped_state(state),
            "unwritten": EBMMState(fast={n: t.detach() for n, t in anchor.items()}),
        }
        with torch.no_grad():
            for name, st in states.items():
                out[name].append(squared_error(memory.read(batch.queries, st), batch.targets).cpu())
    memory.train()
    own, swap, unwritten = (torch.cat(out[k]) for k in ("own", "swap", "unwritten"))
    return summarize(
        {"own_sq_error": own, "swap_sq_error": swap, "unwritten_sq_error": unwritten, "swap_gap": swap - own}
    )


class ClampedReads:
    """A memory whose reads are projected onto the data range [low, high] (for ``evaluate``), e.g. a DKM
    with a Gaussian likelihood, whose mean read is unbounded; EBMM's own read projects likewise (App. A.1)."""

    def __init__(self, memory: Memory, low: float, high: float):
        self.memory, self.low, self.high = memory, low, high

    def eval(self) -> None:
        self.memory.eval()

    def train(self) -> None:
        self.memory.train()

    def write(self, episode: torch.Tensor) -> Any:
        return self.memory.write(episode)

    def read(self, query: torch.Tensor, state: Any) -> torch.Tensor:
        return self.memory.read(query, state).clamp(self.low, self.high)


def _meta_step(memory: Memory, batch: EpisodeBatch) -> None:
    loss, _ = memory.loss(batch)
    loss.backward()


def saved_tensor_mib(memory: Memory, batch: EpisodeBatch) -> float:
    """MiB of the tensors autograd saves for the backward of one meta-step's loss (second-order graphs
    included): a device-independent measure of a meta-step's activation memory (a tensor saved by two
    operations is counted twice, so it is an upper bound)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss, _ = memory.loss(batch)
    del loss
    return total / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed(memory: Memory, batch: EpisodeBatch, device: torch.device, repeats: int = 2) -> dict[str, float]:
    """Meta-steps/s batched over B episodes vs a Python loop over the same B episodes (one at a
    time, same model), eval read latency, and the peak memory of one second-order meta-step."""
    batch = batch.to(device)
    memory.train()
    one = [
        EpisodeBatch(
            patterns=batch.patterns[b : b + 1], queries=batch.queries[b : b + 1], targets=batch.targets[b : b + 1]
        )
        for b in range(batch.num_episodes)
    ]
    _meta_step(memory, batch)  # warm-up
    memory.zero_grad()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        _meta_step(memory, batch)
    _sync(device)
    batched = (time.perf_counter() - start) / repeats
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    )
    start = time.perf_counter()
    for _ in range(repeats):
        for b in one:
            _meta_step(memory, b)
    _sync(device)
    looped = (time.perf_counter() - start) / repeats
    memory.zero_grad()
    memory.eval()
    start = time.perf_counter()
    with torch.no_grad():
        state = memory.write(batch.patterns)
        _sync(device)
        mid = time.perf_counter()
        memory.read(batch.queries, state)
    _sync(device)
    end = time.perf_counter()
    memory.train()
    return {
        "episodes": batch.num_episodes,
        "meta_steps_per_s_batched": 1 / batched,
        "meta_steps_per_s_loop": 1 / looped,
        "batched_speedup": looped / batched,
        "write_latency_s": mid - start,
        "read_latency_s": end - mid,
        "second_order_step_peak_mib": peak,
        "peak_memory_kind": "cuda max_memory_allocated"
        if device.type == "cuda"
        else "CPU max-RSS growth (lower bound)",
        "second_order_step_saved_tensors_mib": saved_tensor_mib(memory, batch),
    }


def query_error(batches: list[EpisodeBatch]) -> dict[str, float]:
    """The errors of the queries themselves (no read): the level a useful read must beat."""
    return summarize(
        {
            "sq_error": torch.cat([squared_error(b.queries, b.targets) for b in batches]),
            "hamming": torch.cat([hamming_error(b.queries, b.targets) for b in batches]),
        }
    )
