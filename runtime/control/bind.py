"""Binding the control socket before the event loop exists (the master's start-up path)."""

from __future__ import annotations

import contextlib
import os
import secrets
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
    only this user (or root) can write to.

    The socket is bound and listening under a private name first, then linked to `path`
    (which fails if the path exists): a socket at `path` is always one that answers, so a
    client is never refused by a master still starting, and a second master starting at
    the same moment never takes the first one's socket for a dead one's and replaces it.
    """
    directory = os.path.dirname(path) or "."
    reason = untrusted_dir(directory)
    if reason is None:
        os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
        reason = untrusted_dir(directory)  # made meanwhile by someone else?
    if reason is not None:
        raise ControlSocketError(
            f"control directory {directory} {reason}: remove it or set --control PATH"
        )
    # unguessable, so nobody can hold the name first; short: AF_UNIX paths are bounded
    private = os.path.join(directory, f".{secrets.token_hex(4)}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(private)
        os.chmod(private, SOCKET_MODE)
        sock.listen(64)
        _link_or_refuse(private, path)
    except BaseException:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(private)
    sock.setblocking(False)
    return sock


def _link_or_refuse(private: str, path: str) -> None:
    """Give the listening socket at `private` the name `path`; a stale socket there (its
    master died without removing it) is replaced, a live one is AlreadyRunning."""
    for _ in range(2):
        try:
            os.link(private, path)
            return
        except FileExistsError:
            if socket_is_live(path):
                break
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    raise AlreadyRunning(
        f"another runtime is already running this ecosystem (control socket {path})"
    )
