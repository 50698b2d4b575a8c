"""Shared pytest fixtures."""

from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """The shipped datasets beside the checkout (../shared/data); skips when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator, so tests are deterministic."""
    return torch.Generator().manual_seed(0)
