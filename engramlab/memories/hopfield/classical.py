"""Classical binary Hopfield networks: Hebbian, Storkey and pseudo-inverse learning.

References:
    Hopfield (1982), "Neural networks and physical systems with emergent collective computational
    abilities" (Hebbian outer-product rule, asynchronous sign updates, capacity ≈ 0.138·d).
    Storkey (1997), "Increasing the capacity of a Hopfield network without sacrificing
    functionality" (local, incremental rule).
    Personnaz, Guyon & Dreyfus (1986) / Kanter & Sompolinsky (1987): the projection
    (pseudo-inverse) rule, W = X X⁺, which makes up to d linearly independent patterns fixed points.
    The EBMM paper (papers/000) uses the classical Hopfield network as its binary-string baseline.

A written episode is a (B, d, d) weight tensor: symmetric, zero diagonal, so one episode occupies
d(d−1)/2 floats. Patterns are ±1 strings (``values="pm1"``) or images in [0, 1] binarised at 0.5
(``values="unit"``); reads come back in the same range. Patterns of any shape are flattened to d.

Reading iterates x_i ← sign(Σ_j W_ij x_j) (a zero field keeps the current bit):
``update="sync"`` updates all units at once, ``update="async"`` visits units one at a time in a
fresh random order per sweep (each query its own order, vectorised over episodes and queries);
``steps`` caps the number of sweeps and reading stops early at a fixed point.

There is nothing to meta-train: ``loss`` only reports the reconstruction error of reads.

Example::

    memory = build_memory("hopfield-storkey", pattern_shape=(128,), update="async", steps=20)
    state = memory.write(strings)             # (B, T, 128) in {-1, 1}
    recalled = memory.read(noisy, state)      # (B, N, 128) in {-1, 1}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import Memory, MemoryConfig, State, register


@dataclass(frozen=True)
class ClassicalHopfieldConfig(MemoryConfig):
    """Reading and value-range settings shared by the three learning rules.

    Attributes:
        update: "sync" (all units at once; may end in a 2-cycle) or "async" (one unit at a time,
            random order per sweep; the energy never increases, so it ends at a fixed point).
        steps: the most sweeps a read may take (one sweep = every unit updated once).
        values: "pm1" for ±1 patterns, "unit" for [0, 1] patterns binarised at 0.5 (reads in {0, 1}).
        seed: seeds the asynchronous update order, so reads are reproducible.
    """

    update: Literal["sync", "async"] = "async"
    steps: int = 20
    values: Literal["pm1", "unit"] = "pm1"
    seed: int = 0


@dataclass
class HopfieldWeights(State):
    """weights: (B, d, d) symmetric, zero-diagonal coupling matrix of each episode."""

    weights: Tensor


def _zero_diagonal(w: Tensor) -> Tensor:
    return w - torch.diag_embed(torch.diagonal(w, dim1=-2, dim2=-1))


def hebbian_weights(x: Tensor) -> Tensor:
    """Hebbian outer-product rule W = (1/d) Σ_μ ξ^μ ξ^μᵀ with zero diagonal (Hopfield 1982).

    Args:
        x: (B, T, d) ±1 patterns.

    Returns:
        (B, d, d) weights.
    """
    d = x.shape[-1]
    return _zero_diagonal(torch.einsum("btd,bte->bde", x, x) / d)


def storkey_weights(x: Tensor) -> Tensor:
    """Storkey's incremental rule (Storkey 1997), one pattern after the other.

    W^ν_ij = W^{ν−1}_ij + (1/d)(ξ_i ξ_j − ξ_i h_ji − h_ij ξ_j), with the local field
    h_ij = Σ_{k≠i,j} W_ik ξ_k = h_i − W_ii ξ_i − W_ij ξ_j and h_i = Σ_k W_ik ξ_k.
    The rule is sequential over the T patterns by definition, so this loops over T (only);
    each step is vectorised over episodes and units.

    Args:
        x: (B, T, d) ±1 patterns.

    Returns:
        (B, d, d) symmetric weights with zero diagonal.
    """
    B, T, d = x.shape
    w = x.new_zeros(B, d, d)
    for t in range(T):
        xi = x[:, t]  # (B, d)
        h = torch.einsum("bik,bk->bi", w, xi)  # h_i, with W_ii = 0 kept throughout
        h_ij = h[:, :, None] - w * xi[:, None, :]  # h_i − W_ij ξ_j
        outer = xi[:, :, None] * xi[:, None, :]
        delta = outer - xi[:, :, None] * h_ij.transpose(1, 2) - h_ij * xi[:, None, :]
        w = _zero_diagonal(w + delta / d)
    return w


_PINV_ROUNDOFF = 1e-9  # float64 round-off of X X⁺ is ~1e-15; meaningful entries are ≳ 1/d


def pseudo_inverse_weights(x: Tensor) -> Tensor:
    """Projection (pseudo-inverse) rule W = X X⁺ with the diagonal removed.

    With X = [ξ^1 … ξ^T] (d × T), X X⁺ projects onto the span of the patterns, so every stored
    pattern satisfies W ξ = (1 − P_ii) ξ_i componentwise after zeroing the diagonal: it stays a fixed
    point of the sign update for up to d − 1 linearly independent patterns. Not incremental.
    With d independent patterns X X⁺ = I, so the weights vanish (entries below 1e-9 are round-off
    and are set to 0, otherwise the sign of round-off noise would drive reads) and reads return
    the query unchanged.

    Args:
        x: (B, T, d) ±1 patterns.

    Returns:
        (B, d, d) symmetric weights with zero diagonal.
    """
    X = x.transpose(1, 2).to(torch.float64)  # (B, d, T): float64 for a stable pseudo-inverse
    P = X @ torch.linalg.pinv(X)
    P = 0.5 * (P + P.transpose(1, 2))
    P = torch.where(P.abs() < _PINV_ROUNDOFF, torch.zeros_like(P), P)  # at T = d, P = I up to round-off
    return _zero_diagonal(P).to(x.dtype)


def hopfield_energy(x: Tensor, weights: Tensor) -> Tensor:
    """E(x) = −½ xᵀ W x for (B, N, d) states and (B, d, d) weights -> (B, N)."""
    return -0.5 * torch.einsum("bnd,bde,bne->bn", x, weights, x)


def _sign_keep(h: Tensor, current: Tensor) -> Tensor:
    """sign(h), keeping the current value where the field is exactly zero."""
    return torch.where(h > 0, torch.ones_like(h), torch.where(h < 0, -torch.ones_like(h), current))


def sync_update(x: Tensor, weights: Tensor, steps: int) -> Tensor:
    """Synchronous sign updates x ← sign(W x), at most ``steps`` times; stops at a fixed point.

    Args:
        x: (B, N, d) ±1 states; weights: (B, d, d).
    """
    for _ in range(steps):
        new = _sign_keep(torch.einsum("bde,bne->bnd", weights, x), x)
        if torch.equal(new, x):
            break
        x = new
    return x


def async_update(x: Tensor, weights: Tensor, steps: int, generator: torch.Generator | None = None) -> Tensor:
    """Asynchronous sign updates in a fresh random order per sweep (each query its own order).

    One sweep visits every unit once; a sweep is d sequential single-unit updates, each vectorised
    over episodes and queries. Stops after ``steps`` sweeps or after a sweep that changed nothing.

    Args:
        x: (B, N, d) ±1 states; weights: (B, d, d).
        generator: CPU generator for the orders (orders are drawn on the CPU and moved to x's device).
    """
    B, N, d = x.shape
    batch = torch.arange(B, device=x.device)[:, None].expand(B, N)
    x = x.clone()
    for _ in range(steps):
        order = torch.rand(B, N, d, generator=generator).argsort(-1).to(x.device)
        before = x.clone()
        for k in range(d):
            unit = order[:, :, k]  # (B, N)
            rows = weights[batch, unit]  # (B, N, d): row W_i. for each query's unit i
            h = (rows * x).sum(-1)
            current = x.gather(-1, unit[..., None]).squeeze(-1)
            x = x.scatter(-1, unit[..., None], _sign_keep(h, current)[..., None])
        if torch.equal(before, x):
            break
    return x


class ClassicalHopfield(Memory):
    """A binary Hopfield network whose weights are written by a fixed (non-learned) rule.

    Subclasses set ``rule``. See the module docstring for shapes, ranges and update modes.
    """

    Config = ClassicalHopfieldConfig
    value_range = (-1.0, 1.0)
    default_pattern_shape = (128,)

    def __init__(self, config: ClassicalHopfieldConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        if config.steps < 1:
            raise BadConfig(f"steps must be at least 1, got {config.steps}")
        if config.update not in ("sync", "async"):
            raise BadConfig(f"update must be 'sync' or 'async', got {config.update!r}")
        if config.values not in ("pm1", "unit"):
            raise BadConfig(f"values must be 'pm1' or 'unit', got {config.values!r}")
        self.value_range = (-1.0, 1.0) if config.values == "pm1" else (0.0, 1.0)
        self.dim = math.prod(self.pattern_shape)

    def rule(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _to_pm1(self, x: Tensor) -> Tensor:
        """(B, T, *pattern) -> (B, T, d) in {−1, 1} (threshold 0 for ±1 data, 0.5 for [0, 1] data)."""
        threshold = 0.0 if self.config.values == "pm1" else 0.5
        flat = x.flatten(2)
        return torch.where(flat > threshold, torch.ones_like(flat), -torch.ones_like(flat))

    def _from_pm1(self, x: Tensor) -> Tensor:
        out = x if self.config.values == "pm1" else (x + 1) / 2
        return out.reshape(*x.shape[:2], *self.pattern_shape)

    def write(self, episode: Tensor) -> HopfieldWeights:
        """(B, T, *pattern) -> HopfieldWeights with (B, d, d) weights."""
        self.check_patterns(episode, "episode")
        return HopfieldWeights(weights=self.rule(self._to_pm1(episode)))

    def read(self, query: Tensor, state: HopfieldWeights) -> Tensor:
        """(B, N, *pattern) queries -> (B, N, *pattern) recalled patterns (same value range)."""
        self.check_patterns(query, "query")
        w = state.weights
        if w.dim() != 3 or w.shape[0] != query.shape[0] or w.shape[1:] != (self.dim, self.dim):
            raise BadInput(
                f"state weights of shape {tuple(w.shape)} do not fit queries of shape {tuple(query.shape)} "
                f"(need ({query.shape[0]}, {self.dim}, {self.dim}))"
            )
        x = self._to_pm1(query).to(w.dtype)
        if self.config.update == "sync":
            x = sync_update(x, w, self.config.steps)
        else:
            generator = torch.Generator().manual_seed(self.config.seed)
            x = async_update(x, w, self.config.steps, generator)
        return self._from_pm1(x)

    def energy(self, x: Tensor, state: HopfieldWeights) -> Tensor:
        """(B, N, *pattern) -> (B, N) Hopfield energy −½ xᵀ W x of the binarised patterns."""
        return hopfield_energy(self._to_pm1(x).to(state.weights.dtype), state.weights)

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean squared reconstruction error of reads of ``batch.queries`` (no parameters to train)."""
        if batch.queries is None or batch.targets is None:
            raise BadInput(f"memory '{self.registry_name}' needs a batch with queries and targets")
        read = self.read(batch.queries, self.write(batch.patterns))
        err = (read - batch.targets).flatten(2).pow(2).sum(-1).mean()
        return err, {"squared_error": err.detach()}

    def memory_floats(self, episode_length: int | None = None) -> int:
        """d(d−1)/2: the free entries of a symmetric zero-diagonal d × d matrix (independent of T)."""
        return self.dim * (self.dim - 1) // 2


@register("hopfield-hebbian")
class HebbianHopfield(ClassicalHopfield):
    """Classical Hopfield network with the Hebbian outer-product rule (capacity ≈ 0.138·d)."""

    def rule(self, x: Tensor) -> Tensor:
        return hebbian_weights(x)


@register("hopfield-storkey")
class StorkeyHopfield(ClassicalHopfield):
    """Classical Hopfield network with Storkey's local incremental rule (capacity above Hebbian)."""

    def rule(self, x: Tensor) -> Tensor:
        return storkey_weights(x)


@register("hopfield-pinv")
class PseudoInverseHopfield(ClassicalHopfield):
    """Classical Hopfield network with the projection (pseudo-inverse) rule (up to d − 1 patterns)."""

    def rule(self, x: Tensor) -> Tensor:
        return pseudo_inverse_weights(x)
