"""One vbm-images model trained and scored as the suite does (issue 13), with its per-test-episode ELBOs saved
so that models run in separate processes can be compared pairwise on the same episodes.

python results/vbm-images/diagnostics/vdiag.py --model vbm-cat --T 64 --episodes 4 --steps 800 --out cat.json
Training: Adam β1 = 0, lr 1e-3, clip 100, non-finite gradients zeroed (the suite's); the weights kept are the
final ones (as in the suite, which does not reload a best checkpoint). Test: the suite's fixed test episodes
(EpisodeSource split "test", seed + 1), ``test_frames`` frames in all; ELBO per frame with every term, the KL
split per frame, and the memory-swap gap.
"""

import argparse
import json
import time

import torch

from engramlab.evaluation.bench import BenchContext
from engramlab.evaluation.suites.vbm_images import QUICK, _evaluate, _source
from engramlab.evaluation.swap import swap_gap
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer

p = argparse.ArgumentParser()
p.add_argument("--model", default="vbm-cat")
p.add_argument("--fields", default="{}")
p.add_argument("--T", type=int, default=16)
p.add_argument("--episodes", type=int, default=8)
p.add_argument("--steps", type=int, default=800)
p.add_argument("--test-episodes", type=int, default=96)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--out", required=True)
a = p.parse_args()
torch.set_num_threads(1)
cfg = {**QUICK, "T": a.T, "episodes": a.episodes}
ctx = BenchContext("vbm-images", True, a.seed, torch.device("cpu"), None, None, False)
train, val, test = (_source(ctx, "binarized_mnist", "static", s, cfg) for s in ("train", "val", "test"))
fields = {**cfg["model"], **cfg["per_model"].get(a.model, {}), "likelihood": "bernoulli", **json.loads(a.fields)}
torch.manual_seed(a.seed)
model = build_memory(a.model, tuple(train.pattern_shape), **fields)
curve = []


def keep(trainer, step, row):
    if "val_loss" in row:
        curve.append((step, -row["val_loss"]))
        print(json.dumps({"step": step, "val_elbo": -row["val_loss"]}), flush=True)


tc = TrainConfig(
    steps=a.steps,
    optimizer="adam",
    lr=1e-3,
    betas=(0.0, 0.999),
    clip_norm=100.0,
    zero_nonfinite_grads=True,
    eval_every=max(a.steps // 8, 1),
    eval_batches=4,
    checkpoint_every=0,
    log_every=max(a.steps // 8, 1),
    tensorboard=False,
)
start = time.perf_counter()
Trainer(
    model, train, tc, val_source=val, device="cpu", progress=False, seed=a.seed, hooks=[keep], handle_signals=False
).fit()
seconds = time.perf_counter() - start
batches = max(a.test_episodes // a.episodes, 1)
scores = _evaluate(model, test, batches, "cpu")
out = {
    "args": vars(a),
    "fields": fields,
    "train_seconds": seconds,
    "val_curve": curve,
    "per_episode": {k: v.tolist() for k, v in scores.items()},
    "means": {k: float(v.mean()) for k, v in scores.items()},
}
json.dump(out, open(a.out, "w"), indent=1)  # saved before the swap test, which can fail on bad settings
out["swap"] = swap = swap_gap(model, (test.batch(i).patterns for i in range(batches)), seed=a.seed)
print(json.dumps({"means": out["means"], "swap": swap, "seconds": seconds}), flush=True)
json.dump(out, open(a.out, "w"), indent=1)
