"""Where does a trained K++ put its information? (issue 13) Loads weights saved by kdiag.py and measures, on
validation episodes: how much the memory differs between episodes vs across its positions, and how much the
prior mean p(z|M, Y) moves when the memory is swapped for another episode's vs when the keys are redrawn.

python results/kanerva-ablation/diagnostics/kprobe.py --weights w.pt --fields '{...}' [--dataset ...]
"""

import argparse
import json

import torch

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.evaluation.suites.kanerva_common import DATASETS
from engramlab.evaluation.suites.kanerva_likelihood import QUICK
from engramlab.memories.base import build_memory

p = argparse.ArgumentParser()
p.add_argument("--weights", required=True)
p.add_argument("--fields", default="{}")
p.add_argument("--dataset", default="binarized-mnist")
p.add_argument("--class-structured", action="store_true")
a = p.parse_args()
torch.set_num_threads(1)
name, options, lik, *_ = DATASETS[a.dataset]
extra = {"class_structured": True, "classes_per_episode": 2} if a.class_structured else {}
cfg = DataConfig(dataset=name, episode_length=8, batch_size=4, corruption=None, **options, **extra)
val = EpisodeSource(cfg, "val", 0)
model = build_memory("kanerva++", tuple(val.pattern_shape), **{**QUICK["kanerva++"], "likelihood": lik,
                                                                 **json.loads(a.fields)})  # fmt: skip
model.load_state_dict(torch.load(a.weights))
model.eval()
torch.manual_seed(0)
with torch.no_grad():
    x = torch.cat([val.batch(i).patterns for i in range(8)])  # (32, 8, ...)
    e = model._embed(x)
    mem = model._write_embedded(e).memory  # (32, C, S, S)
    across_episodes = float(mem.std(0).mean())
    across_positions = float(mem.mean(0).flatten(1).std(1).mean())
    keys, mu, _ = model._keys(e, sample=True)
    z_mu = model.z_posterior(e).chunk(2, -1)[0]
    p_own = model._prior(mem, keys)[0]
    p_swap = model._prior(mem.roll(1, 0), keys)[0]
    p_rekey = model._prior(mem, model._keys(e, sample=True)[0])[0]
    p_meankey = model._prior(mem, mu)[0]
    out = {
        "memory_std_across_episodes": across_episodes,
        "memory_std_across_positions": across_positions,
        "prior_mean_change_swap_memory": float((p_own - p_swap).norm(dim=-1).mean()),
        "prior_mean_change_redraw_keys": float((p_own - p_rekey).norm(dim=-1).mean()),
        "prior_mean_change_mean_keys": float((p_own - p_meankey).norm(dim=-1).mean()),
        "posterior_mean_distance_to_prior_mean": float((z_mu - p_own).norm(dim=-1).mean()),
        "posterior_mean_spread": float(z_mu.flatten(0, 1).std(0).norm()),
    }
print(json.dumps(out, indent=1))
