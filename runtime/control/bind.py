"""Binding the control socket before the event loop exists (the master's start-up path)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket

from runtime.control.protocol import DIR_MODE, SOCKET_MODE, socket_is_live, untrusted_dir
from runtime.errors import RuntimeUserError


class AlreadyRunning(RuntimeUserError):
    """Another master answers on this control socket."""


class ControlSocketError(RuntimeUserError):
    """The control socket cannot be made where it should be."""


def bind_control(path: str) -> socket.socket:
    """Bind the control socket (or say in one line why it cannot be)."""
    try:
        return _bind_control(path)
    except (AlreadyRunning, ControlSocketError):
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ControlSocketError(f"control socket {path}: {reason} (set --control PATH)") from None


def _bind_control(path: str) -> socket.socket:
    """Refuse a live socket, replace a stale one, bind with mode 0600, in a directory that
    only this user (or root) can write to."""
    directory = os.path.dirname(path) or "."
    reason = untrusted_dir(directory)
    if reason is None:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        reason = untrusted_dir(directory)  # made meanwhile by someone else?
    if reason is not None:
        raise ControlSocketError(
            f"control directory {directory} {reason}: remove it or set --control PATH"
        )
    if os.path.exists(path):
        if socket_is_live(path):
            raise AlreadyRunning(
                f"another runtime is already running this ecosystem (control socket {path})"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunning(f"control socket {path} is in use") from None
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, SOCKET_MODE)
    sock.listen(64)
    sock.setblocking(False)
    return sock
