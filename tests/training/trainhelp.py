"""Tiny models and sources for the training tests (not a test module)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.memories.base import Memory, MemoryConfig, register

TEST_MEMORY = "test-linear-ae"


@dataclass(frozen=True)
class LinearAEConfig(MemoryConfig):
    hidden: int = 3
    noise: float = 0.1


class LinearAE(Memory):
    """A linear autoencoder with a noisy code: loss = mean squared reconstruction error."""

    Config = LinearAEConfig

    def __init__(self, config: LinearAEConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        d = math.prod(self.pattern_shape)
        self.encoder = nn.Linear(d, config.hidden)
        self.decoder = nn.Linear(config.hidden, d)

    def loss(self, batch: EpisodeBatch):
        x = batch.patterns.flatten(2)
        z = self.encoder(x)
        if self.config.noise:
            z = z + self.config.noise * torch.randn_like(z)  # model randomness from the global RNG
        mse = (self.decoder(z) - x).pow(2).mean()
        return mse, {"mse": mse.detach(), "code": z.pow(2).mean().detach()}


def register_test_memory() -> type[LinearAE]:
    return register(TEST_MEMORY)(LinearAE)


def unregister_test_memory() -> None:
    from engramlab.memories import base

    base.MEMORIES.remove(TEST_MEMORY)


class ToySource:
    """Deterministic random episodes: ``batch(step, rank)`` is a function of (seed, step, rank)."""

    def __init__(self, seed: int = 0, batch_size: int = 4, length: int = 3, shape=(6,), fixed: bool = False):
        self.seed, self.batch_size, self.length, self.fixed = seed, batch_size, length, fixed
        self.pattern_shape = tuple(shape)
        self.calls: list[tuple[int, int]] = []

    def batch(self, step: int, rank: int = 0) -> EpisodeBatch:
        self.calls.append((step, rank))
        key = 0 if self.fixed else step
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + rank * 10_007 + key)
        return EpisodeBatch(patterns=torch.rand(self.batch_size, self.length, *self.pattern_shape, generator=g))


def make_memory(seed: int = 0, noise: float = 0.1, shape=(6,)) -> LinearAE:
    torch.manual_seed(seed)
    return LinearAE(LinearAEConfig(noise=noise), shape)


# a tiny compiled EBMM run (memory.compile): 2 steps, a checkpoint at step 2
COMPILED_EBMM = """
seed = 0
[memory]
name = "ebmm-strings"
hidden_size = 16
hops = 2
write_steps = 1
read_steps = 2
compile = true
[data]
dataset = "binary_strings"
string_dim = 16
episode_length = 6
batch_size = 4
queries_per_episode = 4
corruption = "flip:p=0.1"
[train]
steps = 2
eval_every = 0
checkpoint_every = 2
"""
