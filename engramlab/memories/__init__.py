"""Memories: one module or sub-package per family, each a registered Memory."""

from engramlab.memories.base import (
    Memory,
    MemoryConfig,
    State,
    build_memory,
    memory_class,
    memory_names,
    register,
)

__all__ = ["Memory", "MemoryConfig", "State", "build_memory", "memory_class", "memory_names", "register"]
