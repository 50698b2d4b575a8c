"""Short diagnostic training of a Kanerva-family model (issue 13): logs, along training, the validation
negative ELBO per image, its KL terms, the key-posterior statistics (K++) and the memory-swap gap.

python results/kanerva-ablation/diagnostics/kdiag.py --model kanerva++ --fields '{}' --steps 600 --out x.json
Adam (lr 1e-3), global-norm clip 10, the quick preset's model sizes and B=4 × T=8 episodes (kanerva-likelihood
--quick) unless overridden. Episodes: i.i.d. images of the split, as in the suites.
"""

import argparse
import json
import time

import torch

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.evaluation.metrics import mean_ci
from engramlab.evaluation.suites.kanerva_common import DATASETS
from engramlab.evaluation.suites.kanerva_likelihood import QUICK
from engramlab.evaluation.swap import swap_gap
from engramlab.memories.base import build_memory

p = argparse.ArgumentParser()
p.add_argument("--model", default="kanerva++")
p.add_argument("--fields", default="{}")
p.add_argument("--dataset", default="binarized-mnist")
p.add_argument("--steps", type=int, default=600)
p.add_argument("--eval-every", type=int, default=100)
p.add_argument("--eval-batches", type=int, default=8)
p.add_argument("--T", type=int, default=8)
p.add_argument("--B", type=int, default=4)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--class-structured", action="store_true")
p.add_argument("--out", required=True)
p.add_argument("--save", default=None, help="save the final weights here")
p.add_argument("--init", default=None, help="start from these weights (a fresh Adam), e.g. to continue a run")
p.add_argument("--step0", type=int, default=0, help="steps already trained (with --init): logged steps start here")
a = p.parse_args()
torch.set_num_threads(1)
name, options, lik, *_ = DATASETS[a.dataset]
base = "kanerva++" if a.model.startswith("kanerva++") else a.model
fields = {**QUICK[base], "likelihood": lik, **json.loads(a.fields)}
extra = {"class_structured": True, "classes_per_episode": 2} if a.class_structured else {}
cfg = DataConfig(dataset=name, episode_length=a.T, batch_size=a.B, corruption=None, **options, **extra)
train, val = EpisodeSource(cfg, "train", a.seed), EpisodeSource(cfg, "val", a.seed)
torch.manual_seed(a.seed)
model = build_memory(a.model, tuple(train.pattern_shape), **fields)
if a.init:
    model.load_state_dict(torch.load(a.init))
opt = torch.optim.Adam(model.parameters(), lr=a.lr)
val_x = [val.batch(i).patterns for i in range(a.eval_batches)]


@torch.no_grad()
def evaluate(step, seconds):
    with torch.random.fork_rng(devices=[]):  # evaluation seeds must not reset the training noise
        return _evaluate(step, seconds)


def _evaluate(step, seconds):
    model.eval()
    terms = {}
    for i, x in enumerate(val_x):
        torch.manual_seed(1000 + i)
        for k, v in model.elbo_terms(x, sample=True).items():
            terms.setdefault(k, []).append(v.mean(1))
    row = {"step": step, "seconds": round(seconds, 1)}
    for k, v in terms.items():
        m, ci = mean_ci(torch.cat(v))
        row[k] = round(m, 3)
        if k == "nll":
            row["nll_ci"] = round(ci, 3)
    if hasattr(model, "_keys"):
        x = torch.cat(val_x)
        _, mu, logvar = model._keys(model._embed(x), sample=False)
        mu, logvar = mu.flatten(-2).flatten(0, 1), logvar.flatten(-2).flatten(0, 1)
        row["key_std"] = round(float((0.5 * logvar).exp().mean()), 4)
        row["key_spread"] = round(float(mu.std(0).mean()), 4)
        sq = 0.5 * (logvar.exp() + mu.square() - 1.0 - logvar).mean(0)
        row["kl_y_max_dim"] = round(float(sq.max()), 3)
    sw = swap_gap(model, val_x, seed=7)
    row["swap_gap"], row["swap_gap_ci"] = round(sw["swap_gap"], 3), round(sw["swap_gap_ci"], 3)
    model.train()
    print(json.dumps(row), flush=True)
    return row


log, start, evals = [], time.perf_counter(), 0.0
log.append(evaluate(a.step0, 0.0))
for step in range(a.step0 + 1, a.step0 + a.steps + 1):
    loss, _ = model.loss(train.batch(step))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
    opt.step()
    if step % a.eval_every == 0 or step == a.step0 + a.steps:
        t0 = time.perf_counter()
        log.append(evaluate(step, t0 - start - evals))
        evals += time.perf_counter() - t0
if a.save:
    torch.save(model.state_dict(), a.save)
json.dump({"args": vars(a), "fields": fields, "log": log}, open(a.out, "w"), indent=1)
