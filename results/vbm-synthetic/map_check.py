"""Issue 13 (lowest priority): our DKM batch-iterative write against its MAP-style description.

``batch_iterative_write`` already addresses by the ridge solve on the posterior mean, (RRᵀ + λI)⁻¹Rz (no C·U),
and rewrites q(M) from the prior with those point addresses (Σ_w = 0): that is the MAP-style variant. This
script shows what the remaining choice — the address solve — does to the C = 50 ratios of negative ELBOs
DKM/VB (T = 32, 50 iterations, q(w) variance 0.3 in the score, 3 seeds; the suite's episodes and scoring):
ridge (ours, the DKM code's) vs the Bayesian solve (RRᵀ + σ²I)⁻¹Rz, and one iteration of ridge.

OMP_NUM_THREADS=1 python results/vbm-synthetic/map_check.py
"""

import torch

from engramlab.evaluation.suites.vbm_synthetic import FULL as cfg
from engramlab.evaluation.suites.vbm_synthetic import _episode
from engramlab.nn.linear_gaussian import batch_iterative_write, linear_gaussian_elbo, vb_gauss_write

torch.set_num_threads(1)
nv = cfg["noise_var"]
print("| C | K | ridge, 50 iters (ours) | Bayes solve, 50 iters | ridge, 1 iter |")
print("|---|---|---|---|---|")
for c in (50,):
    for k in (8, 16, 32, 64):
        ratios = {"ridge": [], "bayes": [], "ridge1": []}
        for seed in range(3):
            gen = torch.Generator().manual_seed(1000 * k + c + seed)
            z, r0, u0 = _episode(k, c, cfg["T"], nv, gen)
            vb = vb_gauss_write(z, r0, u0, nv, cfg["iters"])
            neg_vb = -linear_gaussian_elbo(z, vb.mean, vb.cov, vb.w_mean, vb.w_cov, r0, u0, nv)["elbo"].item()
            w_cov = cfg["dkm_w_var"] * torch.eye(k, dtype=z.dtype).unsqueeze(0)
            for name, solve, iters in (("ridge", "ridge", cfg["iters"]), ("bayes", "bayes", cfg["iters"]),
                                       ("ridge1", "ridge", 1)):  # fmt: skip
                r, u, w = batch_iterative_write(r0, u0, z, nv, iters, solve=solve, ridge=cfg["ridge"])
                neg = -linear_gaussian_elbo(z, r, u, w, w_cov, r0, u0, nv)["elbo"].item()
                ratios[name].append(neg / neg_vb)
        cells = " | ".join(f"{sum(v) / len(v):.2f}" for v in ratios.values())
        print(f"| {c} | {k} | {cells} |")
