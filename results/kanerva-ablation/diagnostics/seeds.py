"""kanerva-ablation's cpu preset on binarized MNIST for one training seed (issue 13, item 2: block writer vs dense
writer, §4.2 trains each five times). Test episodes are those of seed 0 for every seed, as in the suite; the script
keeps the per-episode nll so that ``seeds.py combine`` can pair the writers over episodes and seeds.

OMP_NUM_THREADS=1 python results/kanerva-ablation/diagnostics/seeds.py SEED      (one process per seed)
OMP_NUM_THREADS=1 python results/kanerva-ablation/diagnostics/seeds.py vae SEED  (kanerva-likelihood's VAE baseline)
python results/kanerva-ablation/diagnostics/seeds.py combine
-> results/kanerva-ablation/diagnostics/seeds/seed{SEED}[-vae].json, seeds/summary.md (seeds/README.md: reading)

``--steps N`` (any of the three forms) trains every model for N steps instead of the preset's 3000, the rest of the
preset unchanged, and reads and writes ``seeds/steps{N}/`` instead.

``--dataset binarized-omniglot-dynamic`` runs the same on Omniglot binarized dynamically (a fresh Bernoulli sample of
the grayscale image per training episode, one fixed sample for validation and test, Burda et al.'s practice; the
thresholded Omniglot shipped here is small enough that both models overfit it) and reads and writes
``seeds/{dataset}-steps{N}/``.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_ablation import CPU
from engramlab.evaluation.suites.kanerva_common import build, episode_sources, score, train
from engramlab.evaluation.suites.kanerva_likelihood import CPU as LIK_CPU
from engramlab.evaluation.suites.kanerva_likelihood import _fields

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("what", nargs="+", help="SEED | vae SEED | combine")
parser.add_argument("--steps", type=int, default=CPU["steps"])
parser.add_argument("--dataset", choices=("binarized-mnist", "binarized-omniglot-dynamic"), default="binarized-mnist")
parsed = parser.parse_args()
steps, args, dataset = parsed.steps, parsed.what, parsed.dataset
if dataset != "binarized-mnist":
    out_dir = Path(__file__).parent / "seeds" / f"{dataset}-steps{steps}"
else:
    out_dir = Path(__file__).parent / "seeds" / ("" if steps == CPU["steps"] else f"steps{steps}")
out_dir.mkdir(parents=True, exist_ok=True)

if args[0] == "combine":
    runs = [json.loads(p.read_text()) for p in sorted(out_dir.glob("seed?.json"))]
    lines = [f"# kanerva-ablation, {dataset}, cpu preset, {steps} steps: block vs dense writer over seeds", "",
             "| seed | block nll | dense nll | dense − block (paired over test episodes) | block swap_gap | "
             "block key_std | dense swap_gap | dense key_std |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    diffs, block_means, dense_means = [], [], []
    for r in runs:
        b, d = r["block"], r["dense"]
        diff = torch.tensor(d["nll_per_episode"]) - torch.tensor(b["nll_per_episode"])
        m, ci = mean_ci(diff)
        diffs.append(diff)
        block_means.append(b["nll"]), dense_means.append(d["nll"])
        pair = f"{float(m):+.2f} ± {float(ci):.2f}"
        lines.append(f"| {r['seed']} | {b['nll']:.2f} | {d['nll']:.2f} | {pair} | {b['swap_gap']:.1f} | "
                     f"{b['key_std']:.2f} | {d['swap_gap']:.3f} | {d['key_std']:.2f} |")  # fmt: skip
    m, ci = mean_ci(torch.cat(diffs))
    sm, sci = mean_ci(torch.tensor(dense_means) - torch.tensor(block_means))
    bm, bci = mean_ci(torch.tensor(block_means))
    dm, dci = mean_ci(torch.tensor(dense_means))
    lines += ["", f"Over {len(runs)} seeds: block {float(bm):.2f} ± {float(bci):.2f}, dense {float(dm):.2f} ± "
              f"{float(dci):.2f} (mean ± 95% CI over seeds of each seed's test nll); dense − block "
              f"{float(sm):+.2f} ± {float(sci):.2f} over seeds, {float(m):+.2f} ± {float(ci):.2f} paired over all "
              "test episodes and seeds. Nats per image, lower is better."]  # fmt: skip
    vae = {r["seed"]: r for r in (json.loads(p.read_text()) for p in sorted(out_dir.glob("seed?-vae.json")))}
    if vae:
        lines += ["", "| seed | VAE nll | VAE − K++ block (paired over test episodes) |", "|---|---|---|"]
        gaps = []
        for r in runs:
            if r["seed"] in vae:
                v = vae[r["seed"]]["vae"]
                gap = torch.tensor(v["nll_per_episode"]) - torch.tensor(r["block"]["nll_per_episode"])
                gaps.append(gap)
                m, ci = mean_ci(gap)
                lines.append(f"| {r['seed']} | {v['nll']:.2f} | {float(m):+.2f} ± {float(ci):.2f} |")
        m, ci = mean_ci(torch.cat(gaps))
        lines += [
            "",
            f"VAE − K++ over {len(gaps)} seeds, paired over all test episodes: {float(m):+.2f} ± {float(ci):.2f}.",
        ]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit()

torch.set_num_threads(1)
baseline = args[0] == "vae"
seed = int(args[-1])
ctx = BenchContext("kanerva-ablation", False, 0, torch.device("cpu"), Path("/tmp"), progress=False, preset="cpu")
test = episode_sources(dataset, ctx, CPU["episode_length"], CPU["batch_size"], 0)[0]["test"]
sources = episode_sources(dataset, ctx, CPU["episode_length"], CPU["batch_size"], seed)[0]
shape = tuple(test.pattern_shape)
record = {"seed": seed, "dataset": dataset, "config": {**CPU, "steps": steps}}
for name in ("kpp-vae",) if baseline else ("kanerva++", "kanerva++-dense"):
    torch.manual_seed(seed)
    fields = _fields(LIK_CPU, name, "bernoulli") if baseline else {**CPU["kanerva++"], "likelihood": "bernoulli"}
    model = build(name, fields, shape)
    start = time.process_time()
    facts = train(model, sources["train"], sources["val"], ctx, steps, CPU["lr"])
    terms, keys, swap = score(model, test, CPU["test_batches"], 0, ctx.device)
    key = "vae" if baseline else model.config.writer
    record[key] = {
        "model": name, "nll": float(terms["nll"].mean()), "nll_per_episode": terms["nll"].tolist(),
        "kl_z": float(terms["kl_z"].mean()), "kl_y": float(terms["kl_y"].mean()) if "kl_y" in terms else None, **keys,
        "swap_gap": swap["swap_gap"], "swap_gap_ci": swap["swap_gap_ci"], **facts,
        "cpu_seconds": time.process_time() - start,
    }  # fmt: skip
    print(name, {k: v for k, v in record[key].items() if k != "nll_per_episode"}, flush=True)
(out_dir / f"seed{seed}{'-vae' if baseline else ''}.json").write_text(json.dumps(record, indent=1))
