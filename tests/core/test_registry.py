from dataclasses import dataclass

import pytest
import torch

from engramlab.errors import BadConfig, BadInput
from engramlab.memories import Memory, MemoryConfig, build_memory, memory_names, register


@dataclass(frozen=True)
class EchoConfig(MemoryConfig):
    scale: float = 1.0


@register("test-echo")
class Echo(Memory):
    """A memory that returns its query: exercises the base class checks."""

    Config = EchoConfig


def test_registered_memory_is_listed_and_built_with_its_config():
    assert "test-echo" in memory_names()
    memory = build_memory("test-echo", (4,), scale=2.0)
    assert memory.config.scale == 2.0 and memory.pattern_shape == (4,)


def test_unknown_memory_and_unknown_field_are_clear_errors():
    with pytest.raises(BadConfig, match="unknown memory 'nope'"):
        build_memory("nope", (4,))
    with pytest.raises(BadConfig, match="memory.scal"):
        build_memory("test-echo", (4,), scal=2.0)


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.zeros(2, 3, 5), "shape"),
        (torch.zeros(2, 3, 4, dtype=torch.long), "floating-point"),
        (torch.zeros(0, 3, 4), "empty"),
        (torch.full((2, 3, 4), float("nan")), "NaN"),
        (torch.full((2, 3, 4), 2.0), "must lie in"),
    ],
)
def test_check_patterns_names_the_problem(x, message):
    memory = build_memory("test-echo", (4,))
    with pytest.raises(BadInput, match=message):
        memory.check_patterns(x)


def test_generate_on_a_non_generative_memory_is_a_clear_error():
    memory = build_memory("test-echo", (4,))
    with pytest.raises(BadInput, match="not generative"):
        memory.generate(None, 3)
