"""Fixtures of the training tests: the tiny registered memory lives only for the test that asks."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import trainhelp  # noqa: E402


@pytest.fixture
def registered_memory():
    """Registers the tiny test memory under its test-only name, and removes it afterwards."""
    cls = trainhelp.register_test_memory()
    yield cls
    trainhelp.unregister_test_memory()
