"""The Memory protocol and the registry of memories by name (DESIGN.md, The Memory protocol).

A memory **writes** an episode into a per-episode ``State``, **reads** reconstructions back from
queries, optionally **generates** from a written state, and reports its meta-training ``loss``.
Everything is batched over episodes: tensors carry a leading episode dimension B.

Example::

    memory = build_memory("modern-hopfield", pattern_shape=(64,), beta=8.0)
    state = memory.write(episode)              # (B, T, 64) -> State
    recon = memory.read(queries, state)        # (B, N, 64) -> (B, N, 64)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engramlab.config import from_dict, to_dict
from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.registry import Registry


@dataclass
class State:
    """Base of every per-episode memory state: a dataclass of tensors with leading dimension B.

    Families subclass it with their own fields (fast weights, a posterior q(M), a memory tensor).
    """

    def to(self, device: torch.device | str) -> State:
        moved = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                value = value.to(device)
            elif isinstance(value, dict):
                value = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in value.items()}
            moved[f.name] = value
        return dataclasses.replace(self, **moved)

    def tensors(self) -> dict[str, Tensor]:
        """Every tensor in the state, flattened to dotted names (for size accounting and tests)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                out[f.name] = value
            elif isinstance(value, dict):
                out.update({f"{f.name}.{k}": v for k, v in value.items() if isinstance(v, Tensor)})
        return out


@dataclass(frozen=True)
class MemoryConfig:
    """Base of memory configs; families subclass it with their hyperparameters."""


class Memory(nn.Module):
    """Base class of all memories. Subclasses set ``Config`` and implement the protocol.

    Class attributes:
        Config: the frozen dataclass of the memory's hyperparameters.
        value_range: (low, high) of valid pattern values, checked on write and read; an instance
            may set its own (e.g. classical Hopfield with ``values="unit"``).
        generative: whether ``generate`` is implemented.
        default_pattern_shape: the pattern shape of the paper's main setting, used to report
            parameter counts in `engram list --verbose`.
    """

    Config: ClassVar[type] = MemoryConfig
    value_range: tuple[float, float] = (0.0, 1.0)
    generative: ClassVar[bool] = False
    registry_name: ClassVar[str] = ""
    default_pattern_shape: ClassVar[tuple[int, ...] | None] = None  # for `engram list --verbose`

    def __init__(self, config: Any, pattern_shape: tuple[int, ...]):
        super().__init__()
        if not isinstance(config, self.Config):
            raise BadConfig(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        self.pattern_shape = tuple(int(s) for s in pattern_shape)
        if not self.pattern_shape or any(s <= 0 for s in self.pattern_shape):
            raise BadConfig(f"pattern_shape must be non-empty and positive, got {pattern_shape}")

    # -- the protocol -------------------------------------------------------------------------
    def write(self, episode: Tensor) -> State:
        """(B, T, *pattern) -> per-episode State."""
        raise NotImplementedError

    def read(self, query: Tensor, state: State) -> Tensor:
        """(B, N, *pattern) queries -> (B, N, *pattern) reconstructions."""
        raise NotImplementedError

    def generate(self, state: State, n: int) -> Tensor:
        """(B, n, *pattern) samples from a written memory (generative memories only)."""
        raise BadInput(f"memory '{self.registry_name}' is not generative: it cannot generate")

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar meta-training objective and a dict of detached scalar logs."""
        raise NotImplementedError

    def memory_floats(self, episode_length: int | None = None) -> int:
        """How many floats one written episode occupies (for comparisons at matched size).

        Memories whose size grows with the episode (verbatim stores such as modern Hopfield) need
        ``episode_length``; fixed-size memories ignore it.
        """
        raise NotImplementedError

    # -- input checks shared by every memory ---------------------------------------------------
    def check_patterns(self, x: Tensor, what: str = "episode") -> Tensor:
        """Validate a (B, T, *pattern) tensor: dtype, shape, emptiness, finiteness, range."""
        if not isinstance(x, Tensor):
            raise BadInput(f"{what} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise BadInput(f"{what} must be a floating-point tensor, got dtype {x.dtype}")
        want = ("B", "T", *self.pattern_shape)
        if x.dim() != 2 + len(self.pattern_shape) or tuple(x.shape[2:]) != self.pattern_shape:
            raise BadInput(
                f"{what} must have shape {tuple(want)} for memory '{self.registry_name}', got {tuple(x.shape)}"
            )
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise BadInput(f"{what} is empty: shape {tuple(x.shape)} (need at least one episode and one pattern)")
        # one reduction for both checks: aminmax propagates NaN, and ±Inf is the min or the max (issue 15: the
        # separate isfinite/all/min/max calls were ~15% of a modern-hopfield-learned quick step)
        lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise BadInput(f"{what} contains NaN or Inf")
        low, high = self.value_range
        if lo < low - 1e-5 or hi > high + 1e-5:
            raise BadInput(
                f"{what} values must lie in [{low}, {high}] for memory '{self.registry_name}', got [{lo:.3g}, {hi:.3g}]"
            )
        return x

    def describe(self) -> dict[str, Any]:
        """Name, config and sizes, for `engram list --verbose` and checkpoints."""
        return {
            "name": self.registry_name,
            "config": to_dict(self.config),
            "pattern_shape": list(self.pattern_shape),
            "parameters": sum(p.numel() for p in self.parameters()),
        }


# -- registry ----------------------------------------------------------------------------------
MEMORIES: Registry[type[Memory]] = Registry("memory", "engramlab.memories")


def register(name: str):
    """Class decorator: make a Memory findable by ``name`` from the CLI, configs and benchmarks."""

    def decorate(cls: type[Memory]) -> type[Memory]:
        cls.registry_name = name
        return MEMORIES.add(name, cls)

    return decorate


def memory_names() -> list[str]:
    return MEMORIES.names()


def memory_class(name: str) -> type[Memory]:
    return MEMORIES.get(name)


def build_memory(name: str, pattern_shape: tuple[int, ...], **fields: Any) -> Memory:
    """Build a registered memory from its name and config fields (unknown fields raise BadConfig)."""
    cls = memory_class(name)
    config = from_dict(cls.Config, fields, _path="memory")
    return cls(config, pattern_shape)
