"""`engram bench kanerva-speed`: training-step time of Kanerva++ vs the DKM (K++ App. E: "about 2x faster").

Both models get the same episodes (random binary 28×28 images: step time does not depend on the
data), the same encoder and decoder widths, and the same optimiser; a step is forward + backward +
Adam update. Times are the mean ± 95% CI over timed steps after warm-up steps, the two models' steps
interleaved at each point so that machine load hits both alike. The sweep varies the
episode length T (memory fixed) and the memory size (T fixed): K++'s memory side S (C×S×S floats)
and the DKM's slots K (K×C mean + K×K covariance). One profile per model (at the base episode length)
splits a forward pass into encoder, write, read and decoder shares to explain the ratio.

Presets: quick (CPU-sized models), cpu (the paper's App. E sizes, FULL's sweep, one thread, 3 timed steps per
point), full (App. E sizes, 30 timed steps, for a GPU).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_likelihood import FULL as LIK_FULL
from engramlab.evaluation.suites.kanerva_likelihood import QUICK as LIK_QUICK
from engramlab.memories.base import build_memory
from engramlab.memories.kanerva.coders import split_gaussian
from engramlab.memories.kanerva.kpp import KanervaPlus
from engramlab.nn.fast import adam
from engramlab.nn.matrix_normal import rsample
from engramlab.viz import plot_curves

log = logging.getLogger(__name__)

QUICK = {"batch_size": 4, "lengths": [8, 16, 32], "base_length": 16, "kpp_sizes": [16, 32, 64],
         "dkm_slots": [16, 32, 64], "warmup": 2, "timed": 6, "models": LIK_QUICK}  # fmt: skip
FULL = {"batch_size": 10, "lengths": [8, 16, 32, 64], "base_length": 20, "kpp_sizes": [32, 64, 128],
        "dkm_slots": [32, 64, 128], "warmup": 5, "timed": 30, "models": LIK_FULL}  # fmt: skip
# The paper's App. E sizes (FULL's models and sweep) on one CPU thread (the machine is shared): a step takes 3-45 s
# there, so 1 warm-up and 3 timed steps per point (832 s in all on this machine).
CPU = {**FULL, "warmup": 1, "timed": 3, "threads": 1, "profile_repeats": 1}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stepper(model, episode: torch.Tensor, device: torch.device):
    """A closure running one training step (forward + backward + Adam update) and returning its seconds."""
    opt = adam(model.parameters(), lr=1e-4)
    batch = EpisodeBatch(patterns=episode)

    def step() -> float:
        _sync(device)
        start = time.perf_counter()
        loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        _sync(device)
        return time.perf_counter() - start

    return step


def _pair_times(models: dict, episode: torch.Tensor, warmup: int, timed: int, device: torch.device) -> dict:
    """Step seconds of each model on the same episode, the models' steps interleaved (load hits them alike)."""
    steps = {name: _stepper(model, episode, device) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + timed):
        for name, step in steps.items():
            seconds = step()
            if i >= warmup:
                times[name].append(seconds)
    return times


def _clock(fn, device: torch.device, repeats: int) -> float:
    """Mean seconds of ``fn()`` over ``repeats`` calls after one untimed call."""
    fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def _profile(model, episode: torch.Tensor, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Forward-pass milliseconds of the four parts of one ELBO, and each part's share of their sum.

    encoder: TSM-ResNet18 on the episode (DKM: and the code projection). write: K++'s pooled writer;
    the DKM's sequential Bayesian write (T K×K solves). read: K++'s key net, spatial-transformer crops,
    learned prior and q(z|X) head; the DKM's address solves, memory sample and readout. decoder: every
    decoder pass with its likelihood (K++ one; the DKM two: the ELBO and the autoencoder term).
    """
    clock = lambda fn: 1000 * _clock(fn, device, repeats)  # noqa: E731
    if isinstance(model, KanervaPlus):
        e = model._embed(episode)
        state = model._write_embedded(e)
        z = split_gaussian(model.z_posterior(e))[0]
        parts = {
            "encoder": clock(lambda: model._embed(episode)),
            "write": clock(lambda: model._write_embedded(e)),
            "read": clock(lambda: (model._prior(state.memory, model._keys(e, True)[0]), model.z_posterior(e))),
            "decoder": clock(lambda: model.likelihood.log_prob(model.decoder(z), episode)),
        }
    else:
        z = model.codes(episode)
        state = model._write_codes(z)
        readout = model._address(z, state) @ rsample(state.mean, state.cov)
        parts = {
            "encoder": clock(lambda: model.codes(episode)),
            "write": clock(lambda: model._write_codes(z)),
            "read": clock(lambda: (model._address(z, state) @ rsample(state.mean, state.cov), model.kl_memory(state))),
            "decoder": clock(
                lambda: (
                    model.likelihood.log_prob(model.decoder(readout), episode),
                    model.likelihood.log_prob(model.decoder(z), episode),
                )
            ),
        }
    total = sum(parts.values())
    return {**{f"{k}_ms": v for k, v in parts.items()}, **{f"{k}_share": v / total for k, v in parts.items()}}


def _describe(name: str, profile: dict[str, float]) -> str:
    parts = ("encoder", "write", "read", "decoder")
    return f"{name}: " + ", ".join(
        f"{p} {profile[p + '_ms']:.1f} ms ({100 * profile[p + '_share']:.0f}%)" for p in parts
    )


def _explain(profiles: dict[str, dict[str, float]]) -> str:
    """One sentence from the profile: how much of each forward pass is the shared encoder, and the ratio without it."""
    kpp = next((p for k, p in profiles.items() if k.startswith("kanerva++")), None)
    dkm = next((p for k, p in profiles.items() if k.startswith("dkm")), None)
    if kpp is None or dkm is None:
        return "No profile pair to explain the ratio."
    total = {
        n: sum(p[f"{part}_ms"] for part in ("encoder", "write", "read", "decoder")) for n, p in (("k", kpp), ("d", dkm))
    }
    rest_k, rest_d = total["k"] - kpp["encoder_ms"], total["d"] - dkm["encoder_ms"]
    return (
        f"Profile reading: the shared TSM-ResNet18 encoder is {100 * kpp['encoder_share']:.0f}% of K++'s and "
        f"{100 * dkm['encoder_share']:.0f}% of the DKM's forward pass; "
        f"forward DKM/K++ = {total['d'] / total['k']:.2f}, "
        f"and {rest_d / max(rest_k, 1e-9):.2f} without the encoder (DKM extra: sequential Bayesian write "
        f"{dkm['write_ms']:.1f} ms vs K++ writer {kpp['write_ms']:.1f} ms, two decoder passes vs one). The paper's ~2× "
        "(App. E, attributed to DKM's inner least-squares memory inference) needs the non-encoder work to dominate."
    )


def plot(rows: list[dict[str, Any]], figure_path) -> None:
    """Step time vs episode length T and vs memory floats, one curve per model (95% CI bands)."""
    for sweep, x_key, xlabel in (("T", "T", "episode length T"), ("memory", "memory_floats", "memory floats")):
        curves = {}
        for name in ("kanerva++", "dkm"):
            mine = [r for r in rows if r["sweep"] == sweep and r["model"] == name]
            if mine:
                curves[name] = ([r["step_ms"] for r in mine], [r["step_ms_ci"] for r in mine], [r[x_key] for r in mine])
        if curves:
            plot_curves(None, curves, figure_path(f"step-ms-vs-{sweep}"), xlabel, "training step (ms)",
                        logx=sweep == "memory", title=f"kanerva-speed: step time vs {xlabel}")  # fmt: skip


@register_suite("kanerva-speed", "Kanerva++ vs DKM training-step time, scaling with episode length and memory size")
def kanerva_speed(ctx: BenchContext) -> BenchResult:
    cfg = ctx.budget(quick=QUICK, cpu=CPU, full=FULL)
    shape = (1, 28, 28)
    gen = torch.Generator().manual_seed(ctx.seed)
    longest = max(cfg["lengths"] + [cfg["base_length"]])
    data = (torch.rand(cfg["batch_size"], longest, *shape, generator=gen) < 0.3).float().to(ctx.device)
    kpp_base = {**cfg["models"]["kanerva++"], "likelihood": "bernoulli"}
    dkm_base = {**cfg["models"]["dkm"], "likelihood": "bernoulli"}
    points: list[tuple[str, int, dict[str, Any], dict[str, Any]]] = [
        ("T", t, kpp_base, dkm_base) for t in cfg["lengths"]
    ]
    for s, k in zip(cfg["kpp_sizes"], cfg["dkm_slots"]):
        window = min(kpp_base["window"], s)
        points.append(("memory", cfg["base_length"], {**kpp_base, "memory_size": s, "window": window},
                       {**dkm_base, "memory_slots": k}))  # fmt: skip
    threads_before = torch.get_num_threads()
    if cfg.get("threads"):
        torch.set_num_threads(cfg["threads"])
    rows, profiles = [], {}
    try:
        for sweep, t, kpp_fields, dkm_fields in points:
            models = {}
            for name, fields in (("kanerva++", kpp_fields), ("dkm", dkm_fields)):
                torch.manual_seed(ctx.seed)
                models[name] = build_memory(name, shape, **fields).to(ctx.device)
            times = _pair_times(models, data[:, :t], cfg["warmup"], cfg["timed"], ctx.device)
            for name, model in models.items():
                mean, ci = mean_ci(torch.tensor(times[name]))
                rows.append({"sweep": sweep, "model": name, "T": t, "memory_floats": model.memory_floats(),
                             "step_ms": 1000 * float(mean), "step_ms_ci": 1000 * float(ci)})  # fmt: skip
            log.info(
                "kanerva-speed %s T=%d: %s",
                sweep,
                t,
                ", ".join(f"{r['model']} {r['step_ms']:.0f} ms" for r in rows[-2:]),
            )
        for name, fields in (("kanerva++", kpp_base), ("dkm", dkm_base)):  # one profile per model, base settings
            torch.manual_seed(ctx.seed)
            model = build_memory(name, shape, **fields).to(ctx.device).train()
            episode = data[:, : cfg["base_length"]]
            profiles[f"{name}@T={cfg['base_length']}"] = _profile(
                model, episode, ctx.device, cfg.get("profile_repeats", 5)
            )
    finally:
        torch.set_num_threads(threads_before)
    ratios = {}
    for kpp, row in zip(rows[0::2], rows[1::2]):  # runs come in (kanerva++, dkm) pairs of the same setting
        row["dkm_over_kpp"] = row["step_ms"] / kpp["step_ms"]
        ratios[f"{row['sweep']}:T={row['T']},floats={row['memory_floats']}"] = row["dkm_over_kpp"]
    plot(rows, ctx.figure_path)
    notes = [
        "step = forward + backward + Adam update on the same episodes, batch "
        f"{cfg['batch_size']}; mean ± 95% CI over {cfg['timed']} timed steps after {cfg['warmup']} warm-up steps.",
        "dkm_over_kpp: DKM step time / K++ step time in the same setting (the paper reports about 2).",
        "Profile of one forward pass (the part's ms and its share of the four; encoder = TSM-ResNet18, write = "
        "K++ pooled writer / DKM sequential Bayesian write, read = K++ keys + crops + learned prior / DKM address "
        "solves + memory sample + readout, decoder = every decoder pass with its likelihood): "
        + "; ".join(_describe(k, p) for k, p in profiles.items()),
        _explain(profiles),
    ]
    return BenchResult(
        rows=rows,
        columns=["sweep", "model", "T", "memory_floats", "step_ms", "step_ms_ci", "dkm_over_kpp"],
        config={k: v for k, v in cfg.items() if k != "models"} | {"kanerva++": kpp_base, "dkm": dkm_base},
        extra={"profiles": profiles, "dkm_over_kpp": ratios},
        notes=notes,
        title="kanerva-speed: training-step time, Kanerva++ vs DKM",
    )
