"""kanerva-speed at the paper's App. E sizes, one point (issue 13, item 4): the FULL preset's models
(encoder width 64, K++ memory 3×64×64, window 32, latent 128; DKM 64 slots × code 128) at batch 10 × T = 20,
K++ and DKM steps interleaved (machine load hits both alike), then the suite's forward profile of each.

OMP_NUM_THREADS=1 python results/kanerva-speed/appE_point.py results/kanerva-speed/appE-cpu-point.json
"""

import json
import sys

import torch

from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_speed import FULL, _profile, _step_times
from engramlab.memories.base import build_memory

torch.set_num_threads(1)
gen = torch.Generator().manual_seed(0)
data = (torch.rand(FULL["batch_size"], FULL["base_length"], 1, 28, 28, generator=gen) < 0.3).float()
models = {}
for name in ("kanerva++", "dkm"):
    torch.manual_seed(0)
    models[name] = build_memory(name, (1, 28, 28), **{**FULL["models"][name], "likelihood": "bernoulli"})
times = {n: [] for n in models}
for _ in range(2):  # two interleaved rounds
    for n, m in models.items():
        times[n] += _step_times(m, data, 1, 3, torch.device("cpu"))
        print(n, times[n], flush=True)
out = {
    "batch": FULL["batch_size"],
    "T": FULL["base_length"],
    "models": {n: FULL["models"][n] for n in models},
    "step_s": {},
}
for n, t in times.items():
    mean, ci = mean_ci(torch.tensor(t))
    out["step_s"][n] = {"mean": mean, "ci": ci, "n": len(t)}
out["dkm_over_kpp"] = out["step_s"]["dkm"]["mean"] / out["step_s"]["kanerva++"]["mean"]
out["profiles"] = {n: _profile(m.train(), data, torch.device("cpu"), repeats=1) for n, m in models.items()}
out["load_at_end"] = open("/proc/loadavg").read().split()[0]
print(json.dumps(out, indent=1))
json.dump(out, open(sys.argv[1], "w"), indent=1)
