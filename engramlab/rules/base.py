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

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from engramlab.registry import Registry

FastParams = dict[str, Tensor]
Objective = Callable[[FastParams, Tensor], Tensor]


class WriteRule(nn.Module):
    """Base class: ``forward(fast, episode, objective) -> fast`` with the same keys and shapes."""

    registry_name = ""

    def forward(self, fast: FastParams, episode: Tensor, objective: Objective) -> FastParams:
        raise NotImplementedError


RULES: Registry[type[WriteRule]] = Registry("write rule", "engramlab.rules")


def register_rule(name: str):
    """Class decorator: make a WriteRule findable by ``name``."""

    def decorate(cls: type[WriteRule]) -> type[WriteRule]:
        cls.registry_name = name
        return RULES.add(name, cls)

    return decorate


def rule_names() -> list[str]:
    return RULES.names()


def rule_class(name: str) -> type[WriteRule]:
    """The class registered under ``name``."""
    return RULES.get(name)


def build_rule(name: str, **kwargs: Any) -> WriteRule:
    """Build a registered write rule by name; its constructor validates its own arguments."""
    return rule_class(name)(**kwargs)
