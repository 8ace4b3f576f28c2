"""Pipes for worker output: close-on-exec both ends, with a 1 MiB buffer where allowed."""

from __future__ import annotations

import contextlib
import fcntl
import os

PIPE_SIZE = 1 << 20
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def grow_pipe(fd: int, size: int = PIPE_SIZE) -> None:
    """Ask for a bigger pipe buffer: fewer wake-ups per MiB; refusal (quota, EPERM) is fine."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, size)


def make_pipe() -> tuple[int, int]:
    """A pipe for a worker's stdout or stderr: `(read_fd, write_fd)`, 1 MiB buffer.

    Both ends are O_CLOEXEC so no other worker inherits them (a leaked write end would
    keep the pipe from ever reaching EOF); dup2 onto fd 1/2 in the child clears the flag.
    """
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    grow_pipe(read_fd)
    return read_fd, write_fd
