"""Synthetic sources: random ±1 strings, the VBM linear-Gaussian episodes, sinusoid regression tasks.

All take a ``torch.Generator`` (results are a pure function of it) and are vectorised over
episodes/tasks. Tensors are float32 on the generator's device.

Example::

    g = torch.Generator().manual_seed(0)
    strings = binary_strings(8, 16, 128, g)               # (8, 16, 128) in {-1, +1}
    lg = linear_gaussian_episodes(4, 32, 16, 50, g)       # lg.z (4, 32, 50), lg.memory (4, 16, 50)
    task = sinusoid_tasks(4, 10, g)                       # task.x, task.y (4, 10, 1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from engramlab.errors import BadConfig


def _pos(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BadConfig(f"{name} must be a positive integer, got {value!r}")
    return value


def binary_strings(batch_size: int, episode_length: int, dim: int, generator: torch.Generator) -> Tensor:
    """(B, T, d) float32 i.i.d. uniform ±1 strings (the EBMM / Hopfield binary-string setting, d=128)."""
    b, t, d = _pos("batch_size", batch_size), _pos("episode_length", episode_length), _pos("dim", dim)
    bits = torch.randint(0, 2, (b, t, d), generator=generator, device=generator.device)
    return bits.float().mul_(2.0).sub_(1.0)


@dataclass
class LinearGaussianEpisodes:
    """Episodes of the VBM synthetic benchmark (papers/002 §5.1) and the parameters that made them.

    Attributes:
        z: (B, T, C) observations, z_t = Mᵀ w_t + ε_t, ε_t ~ N(0, noise_std² I_C).
        w: (B, T, K) true addresses, w_t ~ N(0, I_K).
        memory: (B, K, C) true memory M ~ MN(R0, I_K, I_C) (i.e. M = R0 + N(0,1) entries).
        prior_mean: (B, K, C) R0 ~ N(0, 1) entries, the prior mean a model is given.
        noise_std: the observation noise std (1 in the paper).
    """

    z: Tensor
    w: Tensor
    memory: Tensor
    prior_mean: Tensor
    noise_std: float


def linear_gaussian_episodes(
    batch_size: int,
    episode_length: int,
    num_slots: int,
    code_dim: int,
    generator: torch.Generator,
    noise_std: float = 1.0,
) -> LinearGaussianEpisodes:
    """B episodes of T codes from the linear-Gaussian model of VBM §5.1 (NOTES.md, VBM).

    p(M) = MN(R0, I_K, I_C) with R0 ~ N(0, 1) entries (one R0 per episode), w ~ N(0, I_K),
    z = Mᵀ w + N(0, noise_std² I_C). The paper uses T=32, K ∈ {8, …, 256}, C ∈ {50, …, 800}.
    """
    b, t = _pos("batch_size", batch_size), _pos("episode_length", episode_length)
    k, c = _pos("num_slots", num_slots), _pos("code_dim", code_dim)
    if not noise_std > 0:
        raise BadConfig(f"noise_std must be > 0, got {noise_std}")
    dev = generator.device
    r0 = torch.randn(b, k, c, generator=generator, device=dev)
    memory = r0 + torch.randn(b, k, c, generator=generator, device=dev)  # MN(R0, I, I)
    w = torch.randn(b, t, k, generator=generator, device=dev)
    z = w @ memory + noise_std * torch.randn(b, t, c, generator=generator, device=dev)  # z_t = Mᵀ w_t + ε
    return LinearGaussianEpisodes(z=z, w=w, memory=memory, prior_mean=r0, noise_std=float(noise_std))


@dataclass
class SinusoidTasks:
    """Sinusoid regression tasks y = A sin(x + φ) (MPLP appendix; NOTES.md, MPLP).

    Attributes:
        x: (B, N, 1) inputs ~ U(x_range). y: (B, N, 1) targets.
        amplitude: (B,) A ~ U(amplitude_range). phase: (B,) φ ~ U(phase_range).
    """

    x: Tensor
    y: Tensor
    amplitude: Tensor
    phase: Tensor

    def evaluate(self, x: Tensor) -> Tensor:
        """The tasks' true function at x (B, M, 1) -> (B, M, 1)."""
        return self.amplitude.view(-1, 1, 1) * torch.sin(x + self.phase.view(-1, 1, 1))


def sinusoid_tasks(
    num_tasks: int,
    num_points: int,
    generator: torch.Generator,
    amplitude_range: tuple[float, float] = (0.1, 0.5),
    phase_range: tuple[float, float] = (0.0, math.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
) -> SinusoidTasks:
    """``num_tasks`` sinusoids with ``num_points`` samples each; defaults are MPLP's (A~U(0.1,0.5), φ~U(0,π))."""
    b, n = _pos("num_tasks", num_tasks), _pos("num_points", num_points)
    for name, (lo, hi) in (("amplitude_range", amplitude_range), ("phase_range", phase_range), ("x_range", x_range)):
        if not lo <= hi:
            raise BadConfig(f"{name} must have low ≤ high, got {(lo, hi)}")
    dev = generator.device

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator, device=dev)

    amplitude = uniform((b,), *amplitude_range)
    phase = uniform((b,), *phase_range)
    x = uniform((b, n, 1), *x_range)
    y = amplitude.view(-1, 1, 1) * torch.sin(x + phase.view(-1, 1, 1))
    return SinusoidTasks(x=x, y=y, amplitude=amplitude, phase=phase)
