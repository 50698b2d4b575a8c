import sys, json, torch
torch.set_num_threads(1)
from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer
mem = dict(dynamic_size=8, channels=16, hidden_size=32, write_steps=3, read_steps=5, read_gamma=float(sys.argv[1]),
           write_lr=1.0, alpha=0.2, beta=0.05, rate_lr_scale=3.0, write_reduction="sum")
m = build_memory("ebmm-conv", (1, 32, 32), **mem)
def src(split, B):
    return EpisodeSource(DataConfig(dataset="omniglot", image_size=32, episode_length=8, batch_size=B,
                                    corruption="block:size=8,noise=gaussian,clamp=true"), split, 0)
val = src("val", 8)
q = sum(((b.queries - b.targets) ** 2).flatten(2).sum(-1).mean().item() for b in val.fixed_batches(2)) / 2
print("query sq", q, flush=True)
class Hook:
    def __call__(self, tr, step, row):
        if "val_sq_err" in row:
            g, _ = m.reader.schedule()
            print(f"step {step} val_sq {row['val_sq_err']:.3f} ratio {row['val_sq_err']/q:.3f} gamma {[round(x,2) for x in g.tolist()]} rates {[round(x,3) for x in m.rule.rates().flatten().tolist()]} wall {row['wall']:.0f}", flush=True)
cfg = TrainConfig(steps=int(sys.argv[2]), optimizer="adam", lr=1e-3, clip_norm=1.0, eval_every=50, eval_batches=2, log_every=50, tensorboard=False)
Trainer(m, src("train", 4), cfg, val_source=val, progress=False, hooks=[Hook()], handle_signals=False).fit()
