"""Write rules: how an episode is written into a memory's writable ("fast") parameters.

A write rule maps (fast parameters, episode, objective) to new fast parameters. Fast parameters
are a dict of tensors with a leading episode dimension B (one copy per episode); the objective is
a callable ``objective(fast, episode) -> (B,)`` per-episode losses (e.g. EBMM's writing loss).
Because episodes are independent, the gradient of ``objective(...).sum()`` with respect to the
batched fast parameters is every episode's own gradient: rules are batched without Python loops.

Rules are registered by name (``gradient``, ``maml``, ``mplp``) and hold their own meta-learned
parameters (learning rates, a message-passing network), so a memory names its rule in its config.

Example::

    rule = build_rule("gradient", fast_names=["memory.weight"], steps=5)
    new_fast = rule(fast, episode, objective)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from engramlab.errors import BadConfig

FastParams = dict[str, Tensor]
Objective = Callable[[FastParams, Tensor], Tensor]


class WriteRule(nn.Module):
    """Base class: ``forward(fast, episode, objective) -> fast`` with the same keys and shapes."""

    registry_name = ""

    def forward(self, fast: FastParams, episode: Tensor, objective: Objective) -> FastParams:
        raise NotImplementedError


_RULES: dict[str, type[WriteRule]] = {}
_DISCOVERED = False


def register_rule(name: str):
    """Class decorator: make a WriteRule findable by ``name``."""

    def decorate(cls: type[WriteRule]) -> type[WriteRule]:
        cls.registry_name = name
        _RULES[name] = cls
        return cls

    return decorate


def _discover() -> None:
    global _DISCOVERED
    if _DISCOVERED:
        return
    import engramlab.rules as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix="engramlab.rules."):
        importlib.import_module(info.name)
    _DISCOVERED = True


def rule_names() -> list[str]:
    _discover()
    return sorted(_RULES)


def rule_class(name: str) -> type[WriteRule]:
    """The class registered under ``name``."""
    _discover()
    if name not in _RULES:
        raise BadConfig(f"unknown write rule '{name}'; known rules: {', '.join(sorted(_RULES))}")
    return _RULES[name]


def build_rule(name: str, **kwargs: Any) -> WriteRule:
    """Build a registered write rule by name; its constructor validates its own arguments."""
    return rule_class(name)(**kwargs)
