"""Typed, validated description of one app: what the supervisor runs (pure: no I/O here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ExecMode = Literal["fork", "cluster"]
SocketSharing = Literal["shared", "reuseport"]

SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


def is_secret(key: str) -> bool:
    """Env keys that must never be printed (DESIGN: SECRET, TOKEN, PASSWORD, KEY)."""
    upper = key.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` safe to print."""
    return {k: ("****" if is_secret(k) else v) for k, v in env.items()}


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One app after loading, env expansion, `--env` merging and validation.

    `argv` is the resolved command line (interpreter, its args, script, args);
    `env` is the app's own overlay (env_file < env < env_<name>), applied over the
    master's environment at spawn time.
    """

    name: str
    script: str
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str] = field(default_factory=dict)
    instances: int = 1
    exec_mode: ExecMode = "fork"
    interpreter: str | None = None
    interpreter_args: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    autorestart: bool = True
    restart_delay_ms: int = 0
    exp_backoff_restart_delay_ms: int = 0
    max_restarts: int = 16
    min_uptime_ms: int = 1000
    max_memory_restart_bytes: int | None = None
    kill_timeout_ms: int = 5000
    listen_timeout_ms: int = 3000
    wait_ready: bool = False
    stop_exit_codes: frozenset[int] = frozenset()
    treekill: bool = True
    increment_var: str | None = None
    instance_var: str = "NODE_APP_INSTANCE"
    listen: tuple[str, ...] = ()
    socket_sharing: SocketSharing = "shared"
    health: str | None = None
    watch: tuple[str, ...] = ()
    ignore_watch: tuple[str, ...] = ()
    watch_delay_ms: int = 0
    cron_restart: str | None = None
    env_file: str | None = None
