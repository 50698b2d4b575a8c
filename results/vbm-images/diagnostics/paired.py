"""Paired comparison of the one-model runs of ``long_episodes.py`` on their shared test episodes.

python results/vbm-images/diagnostics/paired.py T SEED [REFERENCE] [--prefix P]
-> results/vbm-images/diagnostics/{P}T{T}-seed{SEED}.md (each model minus REFERENCE, default vbm-vae, per test episode,
mean ± 95% CI; the per-frame split: reconstruction, KL of the frame's latents, KL(Ω)/T; swap gap). ``--prefix K2-``
reads the runs of ``structured.py 2 T SEED MODEL``.
"""

import argparse
import json
from pathlib import Path

import torch

from engramlab.evaluation.metrics import mean_ci

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("T", type=int)
parser.add_argument("seed", type=int)
parser.add_argument("reference", nargs="?", default="vbm-vae")
parser.add_argument("--prefix", default="", help="run-folder prefix, e.g. K2- for structured.py's runs")
args = parser.parse_args()
T, seed, reference, prefix = args.T, args.seed, args.reference, args.prefix
here = Path(__file__).parent
runs = {}
for path in sorted(here.glob(f"{prefix}T{T}-seed{seed}-*/vbm-images/cpu.json")):
    record = json.loads(path.read_text())
    (row,) = record["rows"]
    (per_episode,) = record["extra"]["test_elbo_per_episode"].values()
    runs[row["model"]] = (row, torch.tensor(per_episode[row["model"]]), record["wall_time_s"])
ref = runs[reference][1]
lines = [
    f"# vbm-images cpu preset at T = {T}, seed {seed}{', ' + prefix.rstrip('-') if prefix else ''}: paired against "
    f"{reference}",
    "",
    "| model | elbo_per_frame | minus_ref | rec | kl_frame_latents | kl_omega | swap_gap | best_step | wall_s |",
    "|---|---|---|---|---|---|---|---|---|",
]
for name, (row, elbo, wall) in runs.items():
    diff, ci = mean_ci(elbo - ref)
    kl_latents = row["kl_per_frame"] - row["kl_omega_per_frame"]
    lines.append(
        f"| {name} | {row['elbo_per_frame']:.2f} ± {row['elbo_per_frame_ci']:.2f}"
        f" | {float(diff):+.2f} ± {float(ci):.2f}"
        f" | {row['rec_per_frame']:.2f} | {kl_latents:.2f} | {row['kl_omega_per_frame']:.2f}"
        f" | {row['swap_gap']:.2f} ± {row['swap_gap_ci']:.2f} | {row['best_step']} | {wall:.0f} |"
    )
lines += [
    "",
    f"minus_ref: per-test-episode ELBO per frame minus {reference}'s on the same {len(ref)} episodes (positive: above "
    "it). kl_frame_latents: KL of z (and y) per frame; kl_omega: KL(q(Ω) ‖ p(Ω))/T; ELBO = rec − kl_frame_latents − "
    "kl_omega.",
]
out = here / f"{prefix}T{T}-seed{seed}.md"
out.write_text("\n".join(lines) + "\n")
print(out.read_text())
