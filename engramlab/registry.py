"""Registry: the name -> class (or function) tables behind ``build_memory``, ``build_rule`` and
``engram bench``. Each is filled by decorators in the modules of one package, which are all imported
on the first lookup, so adding a memory, rule or suite never means editing a shared ``__init__``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Generic, TypeVar

from engramlab.errors import BadConfig

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one ``kind`` ("memory", "write rule", ...) by name, discovered from ``package``.

    Example::

        MEMORIES = Registry("memory", "engramlab.memories")
        MEMORIES.add("modern-hopfield", ModernHopfield)   # what @register does
        MEMORIES.get("modern-hopfield")                   # BadConfig naming the known ones if absent
    """

    def __init__(self, kind: str, package: str):
        self.kind, self.package = kind, package
        self._entries: dict[str, T] = {}
        self._discovered = False

    def add(self, name: str, obj: T) -> T:
        if name in self._entries and self._entries[name] is not obj:
            raise BadConfig(f"{self.kind} name '{name}' is registered twice")
        self._entries[name] = obj
        return obj

    def remove(self, name: str) -> None:
        """Forget ``name`` (for tests that register a throwaway entry)."""
        self._entries.pop(name, None)

    def _discover(self) -> None:
        if self._discovered:
            return
        pkg = importlib.import_module(self.package)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{self.package}."):
            importlib.import_module(info.name)
        self._discovered = True

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)

    def items(self) -> dict[str, T]:
        self._discover()
        return dict(sorted(self._entries.items()))

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._entries:
            raise BadConfig(f"unknown {self.kind} '{name}'; known: {', '.join(sorted(self._entries))}")
        return self._entries[name]
