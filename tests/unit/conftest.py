"""Fixtures shared by the unit tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest


@pytest.fixture
def short_dir() -> Iterator[str]:
    """A short private directory (mode 0700), since sun_path holds only 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="rt-") as path:
        yield path
