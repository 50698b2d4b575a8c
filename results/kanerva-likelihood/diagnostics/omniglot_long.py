"""K++ (cpu remedies) vs the VAE on binarized Omniglot for longer (issue 13): the kanerva-likelihood cpu preset stops
at 3000 steps with both models still improving (best step = last) and level (VAE − K++ = −0.18 ± 2.28). Same sizes,
episodes (B = 4 × T = 8, i.i.d.), optimiser, best-on-validation selection and test episodes as the suite; only the
step budget differs (issue 13 allows ≤ 60 CPU-minutes per model).

OMP_NUM_THREADS=1 python results/kanerva-likelihood/diagnostics/omniglot_long.py STEPS [dynamic]
-> results/kanerva-likelihood/diagnostics/omniglot_long_STEPS[_dynamic].json

With ``dynamic``: Omniglot binarized dynamically (a fresh Bernoulli sample of the grayscale 28×28 image per training
episode, one fixed sample for validation and test — Burda et al.'s practice) instead of thresholded at 0.5, which
gives the small training set some variety; its nll is not comparable with the thresholded rows.
"""

import json
import sys
import time
from pathlib import Path

import torch

from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_common import episode_sources, score, train
from engramlab.evaluation.suites.kanerva_likelihood import CPU, _fields, build

torch.set_num_threads(1)
steps = int(sys.argv[1])
dynamic = sys.argv[2:] == ["dynamic"]
dataset = "binarized-omniglot-dynamic" if dynamic else "binarized-omniglot"
ctx = BenchContext("kanerva-likelihood", False, 0, torch.device("cpu"), Path("/tmp"), progress=False, preset="cpu")
sources, _ = episode_sources(dataset, ctx, CPU["episode_length"], CPU["batch_size"], ctx.seed)
shape = tuple(sources["train"].pattern_shape)
out, nll = {"steps": steps, "dataset": dataset, "models": {}}, {}
for model in ("kanerva++", "kpp-vae"):
    torch.manual_seed(ctx.seed)
    net = build(model, _fields(CPU, model, "bernoulli"), shape)
    start = time.process_time()
    facts = train(net, sources["train"], sources["val"], ctx, steps, CPU["lr"], eval_every=max(steps // 12, 1))
    cpu_s = time.process_time() - start
    terms, keys, swap = score(net, sources["test"], CPU["test_batches"], ctx.seed, ctx.device)
    nll[model] = terms["nll"]
    mean, ci = mean_ci(terms["nll"])
    row = {**facts, "cpu_seconds": cpu_s, "nll": mean, "nll_ci": ci, "swap_gap": swap["swap_gap"],
           "swap_gap_ci": swap["swap_gap_ci"], "terms": {k: float(v.mean()) for k, v in terms.items()}}  # fmt: skip
    if keys:
        row["key_std"] = keys["key_std"]
    out["models"][model] = row
    print(model, json.dumps(row), flush=True)
diff, ci = mean_ci(nll["kpp-vae"] - nll["kanerva++"])
out["vae_minus_kpp"], out["vae_minus_kpp_ci"] = diff, ci
print("VAE - K++", diff, ci, flush=True)
json.dump(
    out, open(Path(__file__).parent / f"omniglot_long_{steps}{'_dynamic' if dynamic else ''}.json", "w"), indent=1
)
