"""vbm-images' cpu preset at a longer episode (issue 13, item 3): one model per process, so that two models train at
once on the two cores; every other setting (2400 Adam steps, B = 1, 16 rows, code 32, the same fixed validation and
test episodes, best-on-validation selection) is the suite's.

Why: at T = 512 VBM-Cat gains 1.42 nats per frame on the perceptual-code terms over the VAE and pays
KL(q(Ω) ‖ p(Ω))/T = 1.46, so the two are level (results/vbm-images/cpu.md). KL(Ω) grows only like log T (the
posterior precision of each memory entry), so its cost per frame halves when T doubles.

OMP_NUM_THREADS=1 python results/vbm-images/diagnostics/long_episodes.py T SEED MODEL
-> results/vbm-images/diagnostics/T{T}-seed{SEED}-{MODEL}/vbm-images/cpu.{json,md}
then ``paired.py T SEED`` compares the models on the same test episodes.
"""

import sys
from pathlib import Path

import torch

from engramlab.evaluation import bench
from engramlab.evaluation.suites import vbm_images

torch.set_num_threads(1)
T, seed, model = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
vbm_images.CPU.update(T=T, models=[model])
out = bench.run_suite("vbm-images", preset="cpu", seed=seed, progress=False,
                      out_root=Path(__file__).parent / f"T{T}-seed{seed}-{model}")  # fmt: skip
print(out)
