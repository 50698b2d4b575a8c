"""Probe (issue 12): why EBMM-FC's read ignored its memory in the cpu preset (swap_gap 0.000 at every rung).

At the preset's initial write rate 1 a write moves FC's writable Linear by ~150× its norm (rate 0.01: 1.5×). This
meta-trains EBMM-FC (the cpu preset's FC) at T = 1 from scratch for ``steps`` meta-steps at each initial write rate
and reports memory use on 16 fixed test episodes every ``every`` steps. Result (fc_write_rate.log): at every rate
from 1 to 0.001 the untrained read depends on the write (swap_gap 24-39) and within 100 meta-steps it no longer
does (swap_gap ≤ 0.12 ± 0.29 up to step 300), while the error falls from ~320 to ~11-13 (the query: 17.9): the
meta-training finds a static denoiser first and the FC memory stays unused. The write rate is not the cause. EBMM-conv
at T = 1 under the same settings keeps swap_gap 4.1 (d = 2) and 84 (d = 8) after 500 steps.

OMP_NUM_THREADS=1 python results/ebmm-omniglot/diagnostics/fc_write_rate.py 300 100 1.0 0.01
"""

import sys

import torch

from engramlab.evaluation.suites import ebmm_omniglot as eo
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, memory_use
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer

torch.set_num_threads(1)
steps, every, rates = int(sys.argv[1]), int(sys.argv[2]), [float(r) for r in sys.argv[3:]]
b = eo.CPU
arch = {k: v for k, v in b["fc"].items() if k != "dynamic_size"}
rung = {**b, "T": 1, "batch_size": b["images_per_step"]}
train = eo.source("omniglot", rung, "train", 0)
check = eo.source("omniglot", {**rung, "batch_size": 8}, "test", 0).fixed_batches(2)
for rate in rates:
    torch.manual_seed(0)
    m = build_memory("ebmm-fc", (1, 32, 32), dynamic_size=32, **arch, **{**b["ebmm"], "write_lr": rate})
    for k in range(steps // every + 1):
        if k:
            cfg = TrainConfig(
                steps=every, log_every=every, checkpoint_every=0, tensorboard=False, **{**PAPER_TRAIN, **b["train"]}
            )
            Trainer(m, train, cfg, out_dir=None, progress=False, seed=100 + k, handle_signals=False).fit()
        u = memory_use(m, check, torch.device("cpu"))
        print(
            f"write_lr {rate}: step {k * every}: own {u['own_sq_error']:.2f} swap_gap {u['swap_gap']:.3f} ± "
            f"{u['swap_gap_ci']:.3f} unwritten {u['unwritten_sq_error']:.2f} rates "
            f"{[round(float(r), 4) for r in m.rule.rates().flatten()]}",
            flush=True,
        )
