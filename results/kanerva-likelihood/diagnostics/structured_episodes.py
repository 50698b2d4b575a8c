"""kanerva-likelihood's cpu preset on episodes that share structure (issue 13): binarized Omniglot, each episode of
T = 8 frames drawn from 2 characters, K++ (with the cpu remedies), DKM and VAE at the same 3000 steps, the same
episodes, scored on the same fixed test episodes (test alphabets). A deviation from the papers' i.i.d. episodes,
run beside the suite's i.i.d. rows to show what a memory buys when an episode's frames have something in common.

OMP_NUM_THREADS=1 python results/kanerva-likelihood/diagnostics/structured_episodes.py
-> results/kanerva-likelihood/diagnostics/structured/kanerva-likelihood/cpu.{json,md,png}
"""

from pathlib import Path

import torch

from engramlab.evaluation import bench
from engramlab.evaluation.suites import kanerva_likelihood

torch.set_num_threads(1)
kanerva_likelihood.CPU["datasets"] = ["binarized-omniglot-2chars"]
out = bench.run_suite("kanerva-likelihood", preset="cpu", seed=0, progress=False,
                      out_root=Path(__file__).parent / "structured")  # fmt: skip
print(out["md"].read_text())
