"""Probe (issue 12): an Omniglot T-curriculum for EBMM-conv d = 8, from the ebmm-omniglot cpu state: T = 1, 2, 4, 8
rungs (16 images per meta-step), memory use (swap_gap) reported after each rung at the rung's T and at T = 8."""

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
arch = {k: v for k, v in b["conv"].items() if k != "dynamic_size"}
m = build_memory("ebmm-conv", (1, 32, 32), dynamic_size=8, **arch, **b["ebmm"])
load_weights("results/ebmm-omniglot/cpu-work/ebmm-conv-d8/step-00001500", m)
rungs = [(int(T), int(s)) for T, s in (x.split(":") for x in sys.argv[1:])]


def report(tag, Ts):
    for T in Ts:
        test = eo.source("omniglot", {**b, "T": T, "batch_size": 32 // T}, "test", 0).fixed_batches(2)
        u, e, q = memory_use(m, test, torch.device("cpu")), evaluate(m, test, torch.device("cpu")), query_error(test)
        print(f"{tag} read at T={T}: sq {e['sq_error']:.3f} ± {e['sq_error_ci']:.3f} query {q['sq_error']:.3f}")
        print(
            f"  swap_gap {u['swap_gap']:.3f} ± {u['swap_gap_ci']:.3f}",
            f"unwritten {u['unwritten_sq_error']:.3f}",
            flush=True,
        )


for T, steps in rungs:
    src = eo.source("omniglot", {**b, "T": T, "batch_size": 16 // T}, "train", 0)
    cfg = TrainConfig(steps=steps, log_every=50, checkpoint_every=0, tensorboard=False, **{**PAPER_TRAIN, **b["train"]})
    t = time.time()
    Trainer(m, src, cfg, out_dir=None, progress=False, seed=T, handle_signals=False).fit()
    print(f"rung T={T}: {steps} meta-steps in {time.time() - t:.0f} s", flush=True)
    torch.save(m.state_dict(), f"/tmp/probe/climb-T{T}.pt")
    report(f"after T={T}", sorted({T, 8}))
