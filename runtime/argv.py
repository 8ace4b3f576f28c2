"""argparse that raises `UsageError` instead of exiting (one line, exit 2, from `cli`)."""

from __future__ import annotations

import argparse

from runtime.errors import UsageError


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are `UsageError`s."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)
