"""`engram bench kanerva-likelihood`: Kanerva++ vs the DKM vs a VAE with the same coders (K++ Table 1).

For each dataset (binarized MNIST (static), binarized Omniglot, Fashion-MNIST), each model is
trained for the same number of steps on the same training episodes, its best-on-validation weights
are scored on the same fixed test episodes, and a same-wall-clock variant gives every model the
training time K++ took. Reported per image: the full episode bound (``nll``: for the DKM it
includes KL(q(M)‖p(M))/T; K++'s memory is deterministic, so its bound is conditional, with no
KL(M), as in the paper; the VAE's is unconditional), and the conditional bound (``nll_cond``,
memory written from the same episode, no KL(M)) separately — nats for binarized data, bits/dim
for Fashion-MNIST. Mean ± 95% CI over test episodes, one sample per ELBO.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from engramlab.errors import DataError
from engramlab.evaluation.bench import BenchContext, BenchResult, register_suite
from engramlab.evaluation.suites.kanerva_common import (
    DATASETS,
    build,
    episode_sources,
    image_grid,
    score,
    summarise,
    train,
)

log = logging.getLogger(__name__)

# Paper numbers (K++ Table 1): negative (conditional) test ELBO; None where the table has none.
PAPER = {
    "binarized-mnist": {"kanerva++": 41.58, "dkm": 75.3, "kpp-vae": 87.86},
    "binarized-omniglot": {"kanerva++": 66.24, "dkm": 77.2, "kpp-vae": 104.75},
    "binarized-omniglot-2chars": {"kanerva++": None, "dkm": None, "kpp-vae": None},
    "fashion-mnist": {"kanerva++": 3.40, "dkm": None, "kpp-vae": 5.84},
}

QUICK = {
    "datasets": ["binarized-mnist", "binarized-omniglot", "fashion-mnist"],
    "wall_clock_datasets": ["binarized-mnist"],
    "episode_length": 8,
    "batch_size": 4,
    "steps": 300,
    "lr": 1e-3,
    "test_batches": 8,
    "kanerva++": {"encoder_width": 8, "latent": 32, "memory_size": 32, "window": 16, "writer_width": 64,
                  "dense_width": 128, "decoder_width": 16, "prior_width": 16},
    "dkm": {"encoder_width": 8, "code_size": 32, "memory_slots": 32, "decoder_width": 16},
    "kpp-vae": {"encoder_width": 8, "latent": 32, "decoder_width": 16},
}  # fmt: skip

# Issue 13's remedies for K++'s unused memory (named deviations from papers/003, each measured in
# results/kanerva-ablation/diagnostics/README.md): no spectral norm on the key net, key log-variances initialised at
# −2, free bits 0.5 per key dim on KL(Y) in the training loss (the reported bound keeps the exact KL), each frame
# writing coarse (4×4, upsampled) blocks at its key means, and the decoder reading the memory (p(x|z, M̂, Y), Eq. 4).
KPP_REMEDY = {
    "key_spectral": False,
    "key_logvar_init": -2.0,
    "kl_y_free_bits": 0.5,
    "key_write": True,
    "key_write_smooth": 4,
    "decoder_reads": True,
}
# cpu: the quick sizes, 3000 steps per model (≈ 5 CPU-minutes each for K++ here, far below issue 13's 60), binarized
# MNIST and Omniglot, K++ with the remedies; the DKM and the VAE as in quick, with the same steps and episodes.
CPU = {
    **QUICK,
    "datasets": ["binarized-mnist", "binarized-omniglot"],
    "wall_clock_datasets": [],
    "steps": 3000,
    "kanerva++": {**QUICK["kanerva++"], **KPP_REMEDY},
}

FULL = {
    "datasets": ["binarized-mnist", "binarized-omniglot", "fashion-mnist"],
    "wall_clock_datasets": ["binarized-mnist", "binarized-omniglot", "fashion-mnist"],
    "episode_length": 20,
    "batch_size": 10,
    "steps": 100_000,
    "lr": 3e-4,
    "test_batches": 100,
    "kanerva++": {"encoder_width": 64, "latent": 128, "memory_size": 64, "window": 32, "writer_width": 256,
                  "dense_width": 512, "decoder_width": 64, "prior_width": 64, "read_steps": 20},
    "dkm": {"encoder_width": 64, "code_size": 128, "memory_slots": 64, "decoder_width": 64},
    "kpp-vae": {"encoder_width": 64, "latent": 128, "decoder_width": 64},
}  # fmt: skip

MODELS = ["kanerva++", "dkm", "kpp-vae"]


def _fields(cfg: dict[str, Any], model: str, likelihood: str) -> dict[str, Any]:
    return {**cfg[model], "likelihood": likelihood}


def _figures(ctx: BenchContext, dataset: str, models: dict[str, Any], test: Any) -> None:
    """Generations, reconstructions, and iterative-read denoising of salt-and-pepper queries."""
    batch = test.batch(0)
    episode = batch.patterns[:1].to(ctx.device)  # (1, T, C, H, W)
    kpp, dkm = models["kanerva++"], models["dkm"]
    torch.manual_seed(ctx.seed)
    with torch.no_grad():
        kstate, dstate = kpp.write(episode), dkm.write(episode)
        raw_key = torch.zeros(1, kpp.config.reads, 3, device=ctx.device)
        n = episode.shape[1]
        rows = [
            ("written episode", episode[0]),
            ("K++ random keys", kpp.generate(kstate, episode.shape[1])[0]),
            ("K++ perturbed key", kpp.generate(kstate, n, kpp.perturbed_keys(raw_key, n, 0.3))[0]),
            ("DKM", dkm.generate(dstate, episode.shape[1])[0]),
            ("VAE", models["kpp-vae"].generate(models["kpp-vae"].write(episode), episode.shape[1])[0]),
        ]  # fmt: skip
        image_grid(ctx.figure_path(f"{dataset}-generations"), rows, f"{dataset}: generations from a written memory")
        rows = [
            ("original", episode[0]),
            ("K++ read (1 step)", kpp.read(episode, kstate, steps=1)[0]),
            ("DKM read (1 step)", dkm.read(episode, dstate, steps=1)[0]),
            ("VAE", models["kpp-vae"].read(episode, None, steps=1)[0]),
        ]
        image_grid(ctx.figure_path(f"{dataset}-reconstructions"), rows, f"{dataset}: reconstructions")
        noisy = batch.queries[:1].to(ctx.device)  # salt and pepper, p = 0.15, from the EpisodeSource
        ktraj = kpp.read_trajectory(noisy, kstate, steps=10)
        dtraj = dkm.read_trajectory(noisy, dstate, steps=10)
        rows = [("original", episode[0]), ("salt & pepper p=0.15", noisy[0])]
        rows += [(f"K++ step {s}", ktraj[s - 1][0]) for s in (1, 5, 10)]
        rows += [(f"DKM step {s}", dtraj[s - 1][0]) for s in (1, 10)]
        image_grid(ctx.figure_path(f"{dataset}-denoising"), rows, f"{dataset}: iterative reading of noisy queries")


@register_suite("kanerva-likelihood", "Kanerva++ vs DKM vs VAE: test ELBO on binarized MNIST/Omniglot, Fashion-MNIST")
def kanerva_likelihood(ctx: BenchContext) -> BenchResult:
    cfg = ctx.budget(quick=QUICK, cpu=CPU, full=FULL)
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    t, b = cfg["episode_length"], cfg["batch_size"]
    for dataset in cfg["datasets"]:
        _, _, likelihood, unit, variant = DATASETS[dataset]
        try:
            sources, described = episode_sources(dataset, ctx, t, b, ctx.seed)
        except (DataError, ImportError) as e:
            notes.append(f"{dataset} skipped: {e}")
            log.warning("kanerva-likelihood: %s skipped (%s)", dataset, e)
            continue
        shape = tuple(sources["train"].pattern_shape)
        dims = math.prod(shape)
        scale = 1.0 if unit == "nats" else 1.0 / (dims * math.log(2))
        notes.append(f"{dataset}: {variant}. Loader: {described}")
        budgets = ["steps"] + (["wall-clock"] if dataset in cfg["wall_clock_datasets"] else [])
        wall_budget = None
        models: dict[str, Any] = {}
        for budget_name in budgets:
            for model in MODELS:
                torch.manual_seed(ctx.seed)
                net = build(model, _fields(cfg, model, likelihood), shape)
                if budget_name == "steps":
                    facts = train(net, sources["train"], sources["val"], ctx, cfg["steps"], cfg["lr"])
                    if model == "kanerva++":
                        wall_budget = facts["train_seconds"]
                    models[model] = net
                else:  # same wall-clock time as K++'s equal-steps run
                    facts = train(net, sources["train"], sources["val"], ctx, 20 * cfg["steps"], cfg["lr"],
                                  max_seconds=wall_budget, eval_every=max(cfg["steps"] // 4, 1))  # fmt: skip
                terms, keys, swap = score(net, sources["test"], cfg["test_batches"], ctx.seed, ctx.device)
                nll, nll_ci = summarise(terms["nll"], scale)
                if model == "kanerva++":
                    kpp_nll = terms["nll"]  # MODELS starts with K++: the others are compared with it, paired
                paired, paired_ci = (None, None) if model == "kanerva++" else summarise(terms["nll"] - kpp_nll, scale)
                cond = terms.get("nll_cond", terms["nll"])
                nll_cond, nll_cond_ci = summarise(cond, scale)
                kl_m = terms.get("kl_m")
                rows.append({
                    # mean posterior std of K++'s keys (1 = the prior: keys that carry nothing); None without keys
                    "key_std": keys.get("key_std"),
                    "dataset": dataset, "budget": budget_name, "model": model, "unit": unit,
                    "nll": nll, "nll_ci": nll_ci, "minus_kpp": paired, "minus_kpp_ci": paired_ci,
                    "nll_cond": nll_cond, "nll_cond_ci": nll_cond_ci,
                    "kl_m": float(kl_m.mean() * scale) if kl_m is not None else 0.0,
                    "swap_gap": swap["swap_gap"] * scale, "swap_gap_ci": swap["swap_gap_ci"] * scale,
                    "nll_paper": PAPER[dataset][model],
                    "steps": facts["steps"], "train_s": round(facts["train_seconds"], 1),
                    "best_step": facts["best_step"],
                })  # fmt: skip
                log.info("kanerva-likelihood %s", rows[-1])
        if {"kanerva++", "dkm", "kpp-vae"} <= set(models):
            _figures(ctx, dataset, models, sources["test"])
    notes += [
        "nll: negative episode ELBO per image (DKM: includes KL(q(M)||p(M))/T; K++: conditional, its memory is "
        "deterministic so KL(M)=0, as in the paper's Table 1; VAE: unconditional). nll_cond: conditional bound, "
        "memory written from the same episode (optimistic; not a bound on ln p(x)).",
        "swap_gap: ELBO per image with the memory written from the image's own test episode minus the same with "
        "the memory written from another test episode of the batch (same images, same random draws; "
        "engramlab.evaluation.swap), mean ± 95% CI over test episodes, in the table's unit: 0 exactly for the VAE, "
        "≈ 0 for a memory the model does not use.",
        "minus_kpp: this model's nll minus K++'s (same budget), paired over the same test episodes, mean ± 95% CI: "
        "> 0 where K++ is better.",
        "One sample per ELBO, no importance weighting. Weights selected on validation loss; the same fixed test "
        f"episodes ({cfg['test_batches']} batches × {b} episodes × T={t}) for every model.",
        "Wall-clock budget: each model trained for the time K++ took for its equal-steps run (validation included).",
        "Paper numbers (K++ Table 1) were trained for 500–1000 epochs; the quick preset trains minutes on a CPU, "
        "so only the ordering of models is comparable.",
    ]
    if ctx.preset != "full":
        notes.append(
            f"{ctx.preset} budget: {cfg['steps']} steps of {b} episodes × T={t}; CPU-sized models (see config)."
        )
    if ctx.preset == "cpu":
        notes.append(
            "K++ here carries issue 13's remedies (named deviations from papers/003): no spectral norm on the key net, "
            "key log-variances initialised at −2, free bits 0.5 nats per key dim in the training loss only, each frame "
            "writing 4×4 blocks (upsampled to the window) at its key means, and a decoder that also reads the memory, "
            "p(x|z, M̂, Y) as Eq. 4 writes it (results/kanerva-ablation/diagnostics/README.md)."
        )
    return BenchResult(
        rows=rows,
        columns=["dataset", "budget", "model", "unit", "nll", "nll_ci", "minus_kpp", "minus_kpp_ci", "nll_paper",
                 "nll_cond", "nll_cond_ci",
                 "kl_m", "swap_gap", "swap_gap_ci", "key_std", "steps", "train_s", "best_step"],
        config={k: v for k, v in cfg.items()},
        notes=notes,
        title="kanerva-likelihood: Kanerva++ vs DKM vs VAE (negative test ELBO per image)",
    )  # fmt: skip
