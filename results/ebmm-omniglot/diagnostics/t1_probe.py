"""Probe: does an Omniglot T = 1 rung (from the cpu d = 8 state) make the EBMM-conv write episode-specific?"""

import sys
import time

import torch

from engramlab.evaluation.suites import ebmm_omniglot as eo
from engramlab.evaluation.suites.ebmm_common import PAPER_TRAIN, evaluate, memory_use, query_error
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer
from engramlab.training.checkpoint import load_weights

torch.set_num_threads(1)
b = eo.CPU
steps = int(sys.argv[1])
arch = {k: v for k, v in b["conv"].items() if k != "dynamic_size"}
m = build_memory("ebmm-conv", (1, 32, 32), dynamic_size=8, **arch, **b["ebmm"])
load_weights("results/ebmm-omniglot/cpu-work/ebmm-conv-d8/step-00001500", m)


def report(tag):
    for T in (1, 8):
        test = eo.source("omniglot", {**b, "T": T, "batch_size": 8 if T == 1 else 4}, "test", 0).fixed_batches(4)
        u, e, q = memory_use(m, test, torch.device("cpu")), evaluate(m, test, torch.device("cpu")), query_error(test)
        print(tag, "T", T, "sq", round(e["sq_error"], 3), "query", round(q["sq_error"], 3), flush=True)
        print("  swap_gap", round(u["swap_gap"], 3), "±", round(u["swap_gap_ci"], 3), flush=True)
        print("  unwritten", round(u["unwritten_sq_error"], 3), flush=True)


report("before")
src = eo.source("omniglot", {**b, "T": 1, "batch_size": 16}, "train", 0)

cfg = TrainConfig(steps=steps, log_every=50, checkpoint_every=0, tensorboard=False, **{**PAPER_TRAIN, **b["train"]})
t = time.time()
Trainer(m, src, cfg, out_dir=None, progress=False, seed=0, handle_signals=False).fit()
print("trained", steps, "steps in", round(time.time() - t), "s")
report("after")
