"""Exploratory EBMM-conv run on 32×32 Omniglot with the ebmm-ladder's settings (see README.md here).

Usage: OMP_NUM_THREADS=1 python conv_ladder_settings.py GAMMA STEPS   (the logged run: 5.0 2000, stopped at 1100)
"""

import sys

import torch

from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.memories.base import build_memory
from engramlab.training import TrainConfig, Trainer


def source(split: str, batch_size: int) -> EpisodeSource:
    data = DataConfig(
        dataset="omniglot",
        image_size=32,
        episode_length=8,
        batch_size=batch_size,
        corruption="block:size=8,noise=gaussian,clamp=true",
    )
    return EpisodeSource(data, split, 0)


def main(gamma: float, steps: int) -> None:
    torch.set_num_threads(1)
    memory = build_memory(
        "ebmm-conv",
        (1, 32, 32),
        dynamic_size=8,
        channels=16,
        hidden_size=32,
        write_steps=3,
        read_steps=5,
        read_gamma=gamma,
        write_lr=1.0,
        alpha=0.2,
        beta=0.05,
        rate_lr_scale=3.0,
        write_reduction="sum",
    )
    val = source("val", 8)
    query = sum(((b.queries - b.targets) ** 2).flatten(2).sum(-1).mean().item() for b in val.fixed_batches(2)) / 2
    print("query sq", query, flush=True)

    def report(trainer, step, row):
        if "val_sq_err" in row:
            g = [round(x, 2) for x in memory.reader.schedule()[0].tolist()]
            rates = [round(x, 3) for x in memory.rule.rates().flatten().tolist()]
            print(
                f"step {step} val_sq {row['val_sq_err']:.3f} ratio {row['val_sq_err'] / query:.3f} "
                f"gamma {g} rates {rates} wall {row['wall']:.0f}",
                flush=True,
            )

    config = TrainConfig(
        steps=steps, optimizer="adam", lr=1e-3, clip_norm=1.0, eval_every=50, eval_batches=2, log_every=50,
        tensorboard=False,
    )  # fmt: skip
    trainer = Trainer(memory, source("train", 4), config, val_source=val, progress=False, hooks=[report])
    trainer.fit()


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]))
