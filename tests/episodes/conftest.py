"""Episodes tests decode into one session-wide temp cache folder (never the user's cache)."""

import pytest


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("engram-cache")


@pytest.fixture(autouse=True)
def isolated_cache(session_cache, monkeypatch):
    monkeypatch.setenv("ENGRAM_CACHE", str(session_cache))
    return session_cache
