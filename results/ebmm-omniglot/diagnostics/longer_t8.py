"""Probe (issue 12): the ebmm-omniglot cpu preset's EBMM-conv d = 8 after its curriculum (T8 rung, 700 steps),
continued at T = 8 for more meta-steps with the same settings (fresh Adam): does the error keep falling, and does
the memory carry more of it? Evaluated on the suite's 32 test episodes every ``every`` steps.

OMP_NUM_THREADS=1 python results/ebmm-omniglot/diagnostics/longer_t8.py 2100 700 [d]   (d: dynamic_size, default 8)
"""

import sys
import time

import torch

from engramlab.evaluation.suites import ebmm_omniglot as eo
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, evaluate, memory_use
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer
from engramlab.training.checkpoint import load_weights

torch.set_num_threads(1)
total, every = int(sys.argv[1]), int(sys.argv[2])
d = int(sys.argv[3]) if len(sys.argv) > 3 else 8
b = eo.CPU
arch = {k: v for k, v in b["conv"].items() if k != "dynamic_size"}
m = build_memory("ebmm-conv", (1, 32, 32), dynamic_size=d, **arch, **b["ebmm"])
load_weights(f"results/ebmm-omniglot/cpu-work/ebmm-conv-d{d}/T8/step-00000700", m)
test = eo.source("omniglot", b, "test", 0).fixed_batches(b["test_batches"])
train = eo.source("omniglot", {**b, "batch_size": b["images_per_step"] // b["T"]}, "train", 0)


def report(done):
    e, u = evaluate(m, test, torch.device("cpu")), memory_use(m, test, torch.device("cpu"))
    print(
        f"T8 steps {700 + done}: sq {e['sq_error']:.3f} ± {e['sq_error_ci']:.3f} swap_gap {u['swap_gap']:.3f} ± "
        f"{u['swap_gap_ci']:.3f} unwritten {u['unwritten_sq_error']:.3f}",
        flush=True,
    )


report(0)
for k in range(total // every):
    cfg = TrainConfig(
        steps=every, log_every=every, checkpoint_every=0, tensorboard=False, **{**PAPER_TRAIN, **b["train"]}
    )
    t = time.time()
    Trainer(m, train, cfg, out_dir=None, progress=False, seed=100 + k, handle_signals=False).fit()
    print(f"{every} meta-steps in {time.time() - t:.0f} s", flush=True)
    report((k + 1) * every)
