"""vbm-images' cpu preset on class-structured episodes (issue 13, item 3): one model per process, so that two models
train at once on the two cores.

Why: on i.i.d. episodes (the paper's setting, which it calls the worst case for compression in memory, App. F) the
mixture memory returns about as much per frame as its KL(q(Ω) ‖ p(Ω))/T costs, at T = 128 / 512 / 1024 (cpu.md,
T*-seed0.md). A memory is there for episodes whose frames share structure; here each episode holds ``K`` digit
classes. The data: dynamically binarized grayscale MNIST (the labelled variant here; only the t10k file is shipped, so
its index splits: train [0, 8000), val [8000, 9000), test [9000, 10000), the val/test binarization one fixed sample).
Every other setting is the suite's cpu preset (2400 Adam steps, 512 frames per step, 16 rows, code 32, the same fixed
validation and test episodes for every model, best-on-validation weights); the VAE sees the same frames.

OMP_NUM_THREADS=1 python results/vbm-images/diagnostics/structured.py K T SEED MODEL
-> results/vbm-images/diagnostics/K{K}-T{T}-seed{SEED}-{MODEL}/vbm-images/cpu.{json,md}
then ``paired.py T SEED --prefix K{K}-`` compares the models on the same test episodes.
"""

import sys
from pathlib import Path

import torch

from engramlab.evaluation import bench
from engramlab.evaluation.suites import vbm_images

torch.set_num_threads(1)
K, T, seed, model = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
steps = int(sys.argv[5]) if len(sys.argv) > 5 else vbm_images.CPU["steps"]  # a smoke test may train fewer
vbm_images.CPU.update(datasets=[("binarized_mnist", "dynamic", "bernoulli", K)], T=T, episodes=512 // T,
                      models=[model], steps=steps)  # fmt: skip
out = bench.run_suite("vbm-images", preset="cpu", seed=seed, progress=False,
                      out_root=Path(__file__).parent / f"K{K}-T{T}-seed{seed}-{model}")  # fmt: skip
print(out)
