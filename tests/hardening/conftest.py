"""Hardening tests decode into a temp cache folder (never the user's cache); helpers import from here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.mktemp("engram-cache")
    monkeypatch.setenv("ENGRAM_CACHE", str(folder))
    return folder
