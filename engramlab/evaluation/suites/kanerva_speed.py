"""`engram bench kanerva-speed`: training-step time of Kanerva++ vs the DKM (K++ App. E: "about 2x faster").

Both models get the same episodes (random binary 28×28 images: step time does not depend on the
data), the same encoder and decoder widths, and the same optimiser; a step is forward + backward +
Adam update. Times are the mean ± 95% CI over timed steps after warm-up steps. The sweep varies the
episode length T (memory fixed) and the memory size (T fixed): K++'s memory side S (C×S×S floats)
and the DKM's slots K (K×C mean + K×K covariance). A profile splits one forward pass into encoder,
write and read/decoder parts to explain the difference.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_likelihood import FULL as LIK_FULL
from engramlab.evaluation.suites.kanerva_likelihood import QUICK as LIK_QUICK
from engramlab.memories.base import build_memory

QUICK = {"batch_size": 4, "lengths": [8, 16, 32], "base_length": 16, "kpp_sizes": [16, 32, 64],
         "dkm_slots": [16, 32, 64], "warmup": 2, "timed": 6, "models": LIK_QUICK}  # fmt: skip
FULL = {"batch_size": 10, "lengths": [8, 16, 32, 64], "base_length": 20, "kpp_sizes": [32, 64, 128],
        "dkm_slots": [32, 64, 128], "warmup": 5, "timed": 30, "models": LIK_FULL}  # fmt: skip


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_times(model, episode: torch.Tensor, warmup: int, timed: int, device: torch.device) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    batch = EpisodeBatch(patterns=episode)
    times = []
    for i in range(warmup + timed):
        _sync(device)
        start = time.perf_counter()
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


@torch.no_grad()
def _profile(model, episode: torch.Tensor, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Forward-pass seconds: the encoder, the memory write from the embeddings, and the rest of the ELBO."""

    def clock(fn) -> float:
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        return (time.perf_counter() - start) / repeats

    e = model.encoder(2 * episode - 1)
    enc = clock(lambda: model.encoder(2 * episode - 1))
    if hasattr(model, "_write_codes"):  # DKM: codes, then the sequential Bayesian write
        write = clock(lambda: model._write_codes(model.to_code(e)))
    else:  # K++: pooled embedding through the writer
        write = clock(lambda: model._write_embedded(e))
    elbo = clock(lambda: model.elbo_terms(episode))
    return {"encoder_s": enc, "write_s": write, "rest_of_elbo_s": max(elbo - enc - write, 0.0)}


@register_suite("kanerva-speed", "Kanerva++ vs DKM training-step time, scaling with episode length and memory size")
def kanerva_speed(ctx: BenchContext) -> BenchResult:
    cfg = QUICK if ctx.quick else FULL
    shape = (1, 28, 28)
    gen = torch.Generator().manual_seed(ctx.seed)
    longest = max(cfg["lengths"] + [cfg["base_length"]])
    data = (torch.rand(cfg["batch_size"], longest, *shape, generator=gen) < 0.3).float().to(ctx.device)
    kpp_base = {**cfg["models"]["kanerva++"], "likelihood": "bernoulli"}
    dkm_base = {**cfg["models"]["dkm"], "likelihood": "bernoulli"}
    runs: list[tuple[str, str, int, dict[str, Any]]] = []
    for t in cfg["lengths"]:
        runs += [("T", "kanerva++", t, kpp_base), ("T", "dkm", t, dkm_base)]
    for s, k in zip(cfg["kpp_sizes"], cfg["dkm_slots"]):
        window = min(kpp_base["window"], s)
        runs += [("memory", "kanerva++", cfg["base_length"], {**kpp_base, "memory_size": s, "window": window}),
                 ("memory", "dkm", cfg["base_length"], {**dkm_base, "memory_slots": k})]  # fmt: skip
    rows, profiles = [], {}
    for sweep, name, t, fields in runs:
        torch.manual_seed(ctx.seed)
        model = build_memory(name, shape, **fields).to(ctx.device)
        episode = data[:, :t]
        times = torch.tensor(_step_times(model, episode, cfg["warmup"], cfg["timed"], ctx.device))
        mean, ci = mean_ci(times)
        rows.append({"sweep": sweep, "model": name, "T": t, "memory_floats": model.memory_floats(),
                     "step_ms": 1000 * float(mean), "step_ms_ci": 1000 * float(ci)})  # fmt: skip
        if sweep == "T" and t == cfg["base_length"] or (sweep == "T" and t == cfg["lengths"][-1]):
            profiles[f"{name}@T={t}"] = _profile(model, episode, ctx.device)
    ratios = {}
    for row in rows:
        if row["model"] == "dkm":
            twin = next(r for r in rows if r["model"] == "kanerva++" and r["sweep"] == row["sweep"]
                        and r["T"] == row["T"] and rows.index(r) == rows.index(row) - 1)  # fmt: skip
            row["dkm_over_kpp"] = row["step_ms"] / twin["step_ms"]
            ratios[f"{row['sweep']}:T={row['T']},floats={row['memory_floats']}"] = row["dkm_over_kpp"]
    notes = [
        "step = forward + backward + Adam update on the same episodes, batch "
        f"{cfg['batch_size']}; mean ± 95% CI over {cfg['timed']} timed steps after {cfg['warmup']} warm-up steps.",
        "dkm_over_kpp: DKM step time / K++ step time in the same setting (the paper reports about 2).",
        "Profile (forward pass; encoder, memory write from the embeddings, rest of the ELBO: reads, prior, decoders): "
        + "; ".join(f"{k}: " + ", ".join(f"{n}={v * 1000:.1f} ms" for n, v in p.items()) for k, p in profiles.items()),
        "Both models share the TSM-ResNet18 encoder and decoder widths; the DKM additionally runs the sequential "
        "Bayesian write (T dependent K×K solves) and a second decoder pass for its autoencoder term.",
    ]
    return BenchResult(
        rows=rows,
        columns=["sweep", "model", "T", "memory_floats", "step_ms", "step_ms_ci", "dkm_over_kpp"],
        config={k: v for k, v in cfg.items() if k != "models"} | {"kanerva++": kpp_base, "dkm": dkm_base},
        extra={"profiles": profiles, "dkm_over_kpp": ratios},
        notes=notes,
        title="kanerva-speed: training-step time, Kanerva++ vs DKM",
    )
