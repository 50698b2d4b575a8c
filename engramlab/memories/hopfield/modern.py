"""Modern continuous Hopfield networks (Ramsauer et al. 2020), plain and with learned projections.

Reference:
    Ramsauer et al., "Hopfield Networks is All You Need" (2020), Eq. (3)/(4): the update
    ξ ← X softmax(β Xᵀ ξ), which minimises E(ξ) = −β⁻¹ lse(β Xᵀξ) + ½ ξᵀξ + const and usually
    retrieves a stored pattern in one step when patterns are well separated; small β gives
    metastable mixtures of patterns.

A written episode is the (B, T, d) matrix of the stored patterns themselves, so one episode
occupies T·d floats (``memory_floats(episode_length=T)``).

Similarity. ``similarity="dot"`` is Ramsauer's Xᵀξ. The default ``similarity="distance"`` uses
−½‖x_μ − ξ‖² = x_μᵀξ − ½‖x_μ‖² − ½‖ξ‖², i.e. the same update with a per-pattern bias −½‖x_μ‖²
(the ½‖ξ‖² term cancels in the softmax). On ±1 strings all ‖x_μ‖ are equal and the two coincide;
on images the dot product favours bright patterns (a query of a thin "1" has a larger dot product
with a bold "8" than with itself), which is how retrieval silently fails with plain dot products.

β. ``beta=None`` (the default) means β = 16/√d, chosen for retrieval, not attention's soft
1/√d: squared distances between different patterns grow like d, so the score gap between the own
pattern and the others grows like √d·16 and the softmax is close to one-hot on the nearest stored
pattern. Measured on sklearn 8×8 digits (d = 64, β = 2), T = 16, a 4×4 block of noise: the
"distance" read picks the query's own pattern 87% of the time (the "dot" read 56%, at any β); on
128-bit ±1 strings with 10% flips (β = 1.41) one step retrieves T = 64 patterns without error.
Pass ``beta`` explicitly to study metastable mixtures (small β).

Example::

    read = retrieve(queries, stored, beta=4.0, steps=1)           # plain function, no module
    memory = build_memory("modern-hopfield", pattern_shape=(1, 8, 8))
    recon = memory.read(queries, memory.write(episode))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import Memory, MemoryConfig, State, register


def default_beta(dim: int) -> float:
    """The default inverse temperature β = 16/√d (see the module docstring)."""
    return 16.0 / math.sqrt(dim)


def _scores(q: Tensor, k: Tensor, similarity: str) -> Tensor:
    """(B, N, e) queries, (B, T, e) keys -> (B, N, T) similarity (dot or −½ squared distance)."""
    s = torch.einsum("bne,bte->bnt", q, k)
    if similarity == "distance":
        s = s - 0.5 * k.pow(2).sum(-1)[:, None, :]  # −½‖x_μ‖²; −½‖ξ‖² cancels in the softmax
    return s


def retrieve(
    query: Tensor,
    stored: Tensor,
    beta: float | Tensor | None = None,
    steps: int = 1,
    similarity: Literal["dot", "distance"] = "distance",
) -> Tensor:
    """Modern Hopfield retrieval ξ ← X softmax(β s(X, ξ)), repeated ``steps`` times (Ramsauer Eq. 3).

    Args:
        query: (B, N, *pattern) states to start from; or (N, d) with stored (T, d) for one episode.
        stored: (B, T, *pattern) the stored patterns X.
        beta: inverse temperature; None -> ``default_beta(d)``.
        steps: number of updates (1 usually suffices).
        similarity: "distance" (default, −½‖x_μ − ξ‖²) or "dot" (x_μᵀξ, Ramsauer's form).

    Returns:
        (B, N, *pattern) retrieved patterns.
    """
    unbatched = query.dim() == 2 and stored.dim() == 2  # one episode of flat vectors: (N, d), (T, d)
    if unbatched:
        query, stored = query[None], stored[None]
    if query.dim() < 3 or stored.dim() != query.dim() or query.shape[2:] != stored.shape[2:]:
        raise BadInput(f"retrieve: query {tuple(query.shape)} and stored {tuple(stored.shape)} do not match")
    if query.shape[0] != stored.shape[0]:
        raise BadInput(f"retrieve: {query.shape[0]} query episodes but {stored.shape[0]} stored episodes")
    if steps < 1:
        raise BadInput(f"retrieve: steps must be at least 1, got {steps}")
    if similarity not in ("dot", "distance"):
        raise BadInput(f"retrieve: similarity must be 'dot' or 'distance', got {similarity!r}")
    X = stored.flatten(2)
    xi = query.flatten(2)
    if beta is None:
        beta = default_beta(X.shape[-1])
    for _ in range(steps):
        xi = torch.softmax(beta * _scores(xi, X, similarity), dim=-1) @ X
    out = xi.reshape(query.shape)
    return out[0] if unbatched else out


@dataclass(frozen=True)
class ModernHopfieldConfig(MemoryConfig):
    """Attributes:
    beta: inverse temperature; None -> 16/√d (retrieves on images and ±1 strings; see module doc).
    steps: update steps per read (Ramsauer: one usually suffices).
    similarity: "distance" (default) or "dot" (Ramsauer's plain Xᵀξ).
    """

    beta: float | None = None
    steps: int = 1
    similarity: Literal["dot", "distance"] = "distance"


@dataclass
class StoredPatterns(State):
    """patterns: (B, T, d) the written patterns, flattened."""

    patterns: Tensor


class _VerbatimStore(Memory):
    """What both modern Hopfield memories share: a write keeps the (B, T, d) patterns themselves."""

    value_range = (-math.inf, math.inf)

    def __init__(self, config, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        if config.steps < 1:
            raise BadConfig(f"steps must be at least 1, got {config.steps}")
        if config.beta is not None and not config.beta > 0:
            raise BadConfig(f"beta must be positive, got {config.beta}")
        self.dim = math.prod(self.pattern_shape)

    def write(self, episode: Tensor) -> StoredPatterns:
        """(B, T, *pattern) -> StoredPatterns (B, T, d)."""
        self.check_patterns(episode, "episode")
        return StoredPatterns(patterns=episode.flatten(2))

    def check_read(self, query: Tensor, state: StoredPatterns) -> None:
        self.check_patterns(query, "query")
        p = state.patterns
        if p.dim() != 3 or p.shape[0] != query.shape[0] or p.shape[2] != self.dim:
            raise BadInput(
                f"state of shape {tuple(p.shape)} does not fit queries of shape {tuple(query.shape)} "
                f"for memory '{self.registry_name}' (need ({query.shape[0]}, T, {self.dim}))"
            )

    def memory_floats(self, episode_length: int | None = None) -> int:
        """T·d: the stored patterns (a learned store recomputes its keys from them)."""
        if episode_length is None:
            raise BadInput(
                f"memory '{self.registry_name}' stores the T patterns themselves: call memory_floats(episode_length=T)"
            )
        return int(episode_length) * self.dim


@register("modern-hopfield")
class ModernHopfield(_VerbatimStore):
    """Projection-free modern Hopfield store: write keeps X, read applies ξ ← X softmax(β s(X, ξ))."""

    Config = ModernHopfieldConfig
    default_pattern_shape = (128,)

    def __init__(self, config: ModernHopfieldConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        self.beta = config.beta if config.beta is not None else default_beta(self.dim)

    def read(self, query: Tensor, state: StoredPatterns) -> Tensor:
        """(B, N, *pattern) -> (B, N, *pattern) after ``steps`` updates."""
        self.check_read(query, state)
        out = retrieve(query.flatten(2), state.patterns, self.beta, self.config.steps, self.config.similarity)
        return out.reshape(query.shape)

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Squared reconstruction error of reads (the plain store has no parameters to train)."""
        return _read_loss(self, batch)


def _read_loss(memory: Memory, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
    if batch.queries is None or batch.targets is None:
        raise BadInput(f"memory '{memory.registry_name}' needs a batch with queries and targets")
    read = memory.read(batch.queries, memory.write(batch.patterns))
    err = (read - batch.targets).flatten(2).pow(2).sum(-1).mean()  # summed over dims, mean over patterns
    return err, {"squared_error": err.detach()}


@dataclass(frozen=True)
class LearnedHopfieldConfig(MemoryConfig):
    """Attributes:
    key_dim: d_k, the width of the learned query/key projections W_q, W_k: d -> d_k.
    steps: update steps per read.
    beta: initial β (learned as log β); None -> 16/√d as for the plain store.
    similarity: "distance" (−½‖W_k x_μ − W_q ξ‖², default) or "dot" ((W_q ξ)ᵀ W_k x_μ).
    """

    key_dim: int = 64
    steps: int = 1
    beta: float | None = None
    similarity: Literal["dot", "distance"] = "distance"


@register("modern-hopfield-learned")
class LearnedModernHopfield(_VerbatimStore):
    """Modern Hopfield read with meta-learned projections: ξ ← X softmax(β s(W_k X, W_q ξ)).

    Values are the stored patterns X themselves, so a written episode is still the (B, T, d) pattern
    matrix (T·d floats); the keys W_k X are recomputed at read time from the meta-learned W_k.
    W_q and W_k start equal: a random orthogonal matrix when d_k ≥ d (distances are preserved, so
    the untrained memory reads exactly like the plain store with the same β), orthonormal rows
    scaled by √(d/d_k) when d_k < d (distances preserved in expectation). ``loss`` is the
    squared error of reads of ``batch.queries`` against ``batch.targets`` after writing
    ``batch.patterns`` (summed over pattern dimensions, mean over patterns and episodes).
    """

    Config = LearnedHopfieldConfig
    default_pattern_shape = (1, 8, 8)

    def __init__(self, config: LearnedHopfieldConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        if config.key_dim < 1:
            raise BadConfig(f"key_dim must be at least 1, got {config.key_dim}")
        self.query_proj = nn.Linear(self.dim, config.key_dim, bias=False)  # W_q
        self.key_proj = nn.Linear(self.dim, config.key_dim, bias=False)  # W_k
        with torch.no_grad():
            init = nn.init.orthogonal_(torch.empty(config.key_dim, self.dim))
            init *= math.sqrt(max(1.0, self.dim / config.key_dim))  # E‖Wx‖² = ‖x‖² when d_k < d
            self.query_proj.weight.copy_(init)
            self.key_proj.weight.copy_(init)
        beta = config.beta if config.beta is not None else default_beta(self.dim)
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))

    @property
    def beta(self) -> Tensor:
        return self.log_beta.exp()

    def read(self, query: Tensor, state: StoredPatterns) -> Tensor:
        """(B, N, *pattern) -> (B, N, *pattern): ``steps`` updates ξ ← X softmax(β s(W_k X, W_q ξ))."""
        self.check_read(query, state)
        X = state.patterns
        keys = self.key_proj(X)  # (B, T, d_k)
        xi = query.flatten(2)
        for _ in range(self.config.steps):
            attn = torch.softmax(self.beta * _scores(self.query_proj(xi), keys, self.config.similarity), dim=-1)
            xi = attn @ X
        return xi.reshape(query.shape)

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Squared error of reads vs targets (the meta-objective), with β in the logs."""
        err, logs = _read_loss(self, batch)
        logs["beta"] = self.beta.detach()
        return err, logs
