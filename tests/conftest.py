"""Fixtures for the whole suite."""

from __future__ import annotations

import pytest

from tests.integration.conftest import free_port


@pytest.fixture(autouse=True)
def own_port(monkeypatch: pytest.MonkeyPatch) -> None:
    """$PORT is a port of this test's own, for every process it starts: a cluster app
    without `listen` binds :$PORT (3000 when unset), and two tests running at once on
    3000 would collide (or, in reuseport mode before that was refused, share it)."""
    monkeypatch.setenv("PORT", str(free_port()))
