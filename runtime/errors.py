"""Errors a user can cause, and the exit codes they map to (only `cli` exits)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h

SD_LISTEN_FDS_START = 3


class RuntimeUserError(Exception):
    """A mistake in what the user gave us: printed as one line, never a traceback."""

    exit_code = EXIT_FAILED


class UsageError(RuntimeUserError):
    """Bad command line."""

    exit_code = EXIT_USAGE


class ConfigError(RuntimeUserError):
    """Bad ecosystem file or option; `str()` is one line naming the file, app and key."""

    exit_code = EXIT_CONFIG

    def __init__(
        self,
        file: str,
        message: str,
        *,
        index: int | None = None,
        app: str | None = None,
        key: str | None = None,
    ) -> None:
        self.file = file
        self.index = index
        self.app = app
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file
        if self.index is not None:
            where += f": apps[{self.index}]"
            if self.app:
                where += f" ({self.app})"
            if self.key:
                where += f".{self.key}"
        elif self.key:
            where += f": {self.key}"
        return f"{where}: {self.message}"
