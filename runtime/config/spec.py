"""One app's settings, validated into the typed `AppSpec` the supervisor runs (pure: no I/O).

`config.load` reads the file and finds out facts about the machine (cpu count, the
resolved argv, the env file's text); everything that only looks at values lives here,
with what each key means declared once in `config.keys`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from runtime.config.keys import BY_NAME, CANONICAL, DEFAULT_PORT, SIGTERM, unknown_key_warning
from runtime.config.values import (
    BadValue,
    ExecMode,
    SocketSharing,
    got,
    is_bool_text,
    parse_bool,
    parse_env,
    parse_filter_env,
    parse_instances,
    parse_port,
    parse_signal,
    parse_text,
    parse_texts,
)
from runtime.errors import ConfigError

T = TypeVar("T")
D = TypeVar("D")

__all__ = ["AppSpec", "ExecMode", "RawApp", "Resolved", "SocketSharing", "build_app_spec"]


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One app after loading, env expansion, `--env` merging and validation.

    `argv` is the resolved command line (interpreter, its args, script, args); `env` is
    the app's own overlay (env_file < port < env < env_<name>), applied over the master's
    environment at spawn time. Built by `build_app_spec`, which takes every default from
    `config.keys`.
    """

    name: str
    script: str
    argv: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    instances: int
    exec_mode: ExecMode
    exec_mode_why: str  # "exec_mode", or why it was inferred (`check` shows it)
    node: bool  # a node program (IPC channel, SIGINT by default, the node preload)
    preload: bool
    interpreter: str | None
    interpreter_args: tuple[str, ...]
    args: tuple[str, ...]
    autorestart: bool
    restart_delay_ms: int
    exp_backoff_restart_delay_ms: int
    max_restarts: int
    min_uptime_ms: int
    max_memory_restart_bytes: int | None
    kill_signal: int
    shutdown_with_message: bool
    kill_timeout_ms: int
    listen_timeout_ms: int
    wait_ready: bool
    stop_exit_codes: frozenset[int]
    treekill: bool
    increment_var: str | None
    instance_var: str
    listen: tuple[str, ...]
    socket_sharing: SocketSharing
    health: str | None
    watch: tuple[str, ...]
    ignore_watch: tuple[str, ...]
    watch_delay_ms: int
    cron_restart: str | None
    env_file: str | None
    autostart: bool
    filter_env: tuple[str, ...]  # master variables whose names contain one of these are left out
    inherit_env: bool  # False (`filter_env: true`): no master variable at all
    run_as: RunAs | None
    autoscale: AutoscaleSpec | None  # `instances: {min, max}`: `instances` is then the min
    version: str | None  # the `version:` key (else `list` reads cwd's package files)

    @property
    def most_instances(self) -> int:
        """The most instances the app runs without a `scale` command (autoscaling counts)."""
        return max(self.instances, self.autoscale.max if self.autoscale else 0)


def default_name(script: str) -> str:
    """The script's basename without extension (the first word of a command line)."""
    words = script.split()
    base = posixpath.basename(words[0].rstrip("/")) if words else script
    return posixpath.splitext(base)[0] or base or script


@dataclass(frozen=True, slots=True)
class RawApp:
    """One app's settings under their canonical names, not yet validated."""

    file: str
    index: int | None
    name: str
    values: Mapping[str, object]
    envs: Mapping[str, object]
    warnings: tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """`file: apps[i] (name)`, the prefix of every warning about this app."""
        return _where(self.file, self.index, self.name)

    def error(self, key: str | None, message: str) -> ConfigError:
        """The one-line error naming file, app and key."""
        return ConfigError(self.file, message, index=self.index, app=self.name, key=key)

    def value(self, key: str) -> Any:
        """The parsed value of a key of the table, or its default when absent or null."""
        entry = BY_NAME[key]
        assert entry.parse is not None, f"{key} is read by spec itself"
        return self.get(key, entry.parse, entry.default)

    def get(self, key: str, parse: Callable[[object], T], default: D) -> T | D:
        """The parsed value of `key`, or `default` when it is absent or null."""
        value = self.values.get(key)
        if value is None:
            return default
        try:
            return parse(value)
        except BadValue as exc:
            raise self.error(key, str(exc)) from None


def _where(file: str, index: int | None, name: str | None) -> str:
    if index is None:
        return file
    return f"{file}: apps[{index}]" + (f" ({name})" if name else "")


def _showable(name: str) -> bool:
    """A name that can go inside an error line as it is (spaces, but no tabs, newlines or
    other controls)."""
    return bool(name) and name.isprintable()


def _canonical(raw: Mapping[object, object], file: str, index: int | None) -> RawApp:
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    envs: dict[str, object] = {}
    unknown: list[str] = []
    hint = raw.get("name")
    name = hint if isinstance(hint, str) and _showable(hint) else None
    for key, value in raw.items():
        if not isinstance(key, str):
            message = f"expected string keys, got {got(key)}"
            raise ConfigError(file, message, index=index, app=name)
        canonical = CANONICAL.get(key)
        if canonical is None and key.startswith("env_") and len(key) > 4:
            envs[key[4:]] = value
        elif canonical is None:
            unknown.append(key)
        elif canonical in values:
            message = f"given twice, as '{spelled[canonical]}' and '{key}'"
            raise ConfigError(file, message, index=index, app=name, key=canonical)
        else:
            values[canonical], spelled[canonical] = value, key
    return RawApp(file, index, name or "", values, envs, tuple(unknown))


def normalize_app(raw: object, *, file: str, index: int | None) -> RawApp:
    """Map aliases and camelCase to canonical keys, find the name, warn about unknown keys."""
    if not isinstance(raw, Mapping):
        message = f"expected a mapping of app settings, got {got(raw)}"
        raise ConfigError(file, message, index=index)
    app = _canonical(raw, file, index)
    script = app.values.get("script")
    if script is None:
        raise app.error("script", "expected the file or command to run, got nothing")
    if not isinstance(script, str) or not script.strip() or "\0" in script:
        raise app.error("script", f"expected a file or a command line, got {got(script)}")
    named = RawApp(file, index, app.name or default_name(script), app.values, app.envs)
    name = named.get("name", parse_text, named.name).strip()
    if "," in name or not _showable(name):
        message = f"expected a name without commas or control characters, got {name!r}"
        shown = name if _showable(name) else None
        raise ConfigError(file, message, index=index, app=shown, key="name")
    where = _where(file, index, name)
    warnings = tuple(unknown_key_warning(where, key) for key in app.warnings)
    return RawApp(file, index, name, app.values, app.envs, warnings)


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    """`instances: {min, max}`: the range an app autoscales in, and the thresholds
    (runtime.policy.autoscale says how they are used)."""

    min: int
    max: int
    saturation_high: float = 0.25  # share of the last window with connections waiting
    cpu_high: float = 80.0  # % of one core, averaged over the app's workers
    cpu_low: float = 20.0
    up_after_s: float = 1.0
    down_after_s: float = 30.0
    up_cooldown_s: float = 3.0
    down_cooldown_s: float = 15.0


@dataclass(frozen=True, slots=True)
class RunAs:
    """Whom to run an app as (`uid`, `user`, `gid`), looked up in the password database."""

    user: str
    uid: int
    gid: int
    home: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """What the edge found out for one app: its command line, directories and the machine."""

    script: str
    argv: tuple[str, ...]
    cwd: str
    interpreter: str | None = None
    interpreter_args: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env_file: str | None = None
    env_file_env: Mapping[str, str] = field(default_factory=dict)
    file_env: Mapping[str, str] = field(default_factory=dict)  # set by a JS ecosystem file
    cpus: int = 1
    run_as: RunAs | None = None  # uid/gid/user, resolved (only when the master is root)
    node: bool = False  # the command runs node (config.command.runs_node)
    kill_signal: int = SIGTERM  # this app's default stop signal (SIGINT for node, as pm2)
    default_port: str = str(DEFAULT_PORT)  # the master's $PORT, else pm2's 3000


def build_env(app: RawApp, facts: Resolved, env_name: str | None) -> dict[str, str]:
    """What the file set in process.env < env_file < port < env < env_<name>; Python apps
    get PYTHONUNBUFFERED=1 unless set; an app run as another user gets its HOME, as in pm2."""
    env = {**facts.file_env, **facts.env_file_env}
    port = app.get("port", parse_port, None)
    base = app.get("env", parse_env, dict[str, str]())
    selected: dict[str, str] = {}
    if env_name is not None and env_name in app.envs:
        try:
            selected = parse_env(app.envs[env_name])
        except BadValue as exc:
            raise app.error(f"env_{env_name}", str(exc)) from None
    if port is not None:
        if "PORT" in base or "PORT" in selected:
            raise app.error("port", "conflicts with PORT in env (set one of them)")
        env["PORT"] = str(port)
    env.update(base)
    env.update(selected)
    if facts.argv and "python" in posixpath.basename(facts.argv[0]):
        env.setdefault("PYTHONUNBUFFERED", "1")
    if facts.run_as is not None:
        env.setdefault("HOME", facts.run_as.home)
    return env


def _listen(
    app: RawApp, exec_mode: ExecMode, env: Mapping[str, str], facts: Resolved
) -> tuple[str, ...]:
    port = env.get("PORT") or facts.default_port
    default = (":$PORT",) if exec_mode == "cluster" else ()
    addresses = app.get("listen", parse_texts, default)
    return tuple(a.replace("${PORT}", port).replace("$PORT", port) for a in addresses)


def _watch(app: RawApp, cwd: str) -> tuple[str, ...]:
    value = app.values.get("watch")
    if value is None or value is False:
        return ()
    if value is True:
        return (cwd,)
    if is_bool_text(value):
        return (cwd,) if parse_bool(value) else ()
    paths = app.get("watch", parse_texts, ())
    return tuple(posixpath.normpath(posixpath.join(cwd, p)) for p in paths)


def _exec_mode(app: RawApp) -> tuple[ExecMode, str]:
    """`exec_mode` as given, else fork with `execute_command`, else cluster when `instances` is
    given (as pm2), else fork."""
    if app.values.get("exec_mode") is not None:
        mode: ExecMode = app.value("exec_mode")
        return mode, "exec_mode"
    if app.get("execute_command", parse_bool, False):
        return "fork", "execute_command: true (as in pm2)"
    if app.values.get("instances") is not None:
        return "cluster", "inferred: instances is given, as in pm2"
    return "fork", "inferred: the default"


def _check_conflicts(app: RawApp, spec: AppSpec, warnings: list[str]) -> None:
    if spec.restart_delay_ms and spec.exp_backoff_restart_delay_ms:
        warnings.append(
            f"{app.where}: restart_delay: has no effect beside exp_backoff_restart_delay, "
            "which is used (as in pm2)"
        )
    if spec.increment_var is not None and spec.increment_var == spec.instance_var:
        raise app.error("increment_var", f"conflicts with instance_var {spec.instance_var!r}")
    if app.values.get("socket_sharing") is not None and not spec.listen:
        raise app.error("socket_sharing", "has no effect without listen (set listen or drop it)")


def build_app_spec(
    app: RawApp,
    facts: Resolved,
    *,
    env_name: str | None = None,
    warnings: list[str] | None = None,
) -> AppSpec:
    """Validate every setting of one app into an `AppSpec`, or raise ConfigError.

    What pm2 accepts although it is really wrong (`instances: "4,"`, both restart delays)
    is read as pm2 reads it, with a line added to `warnings`.
    """
    warnings = [] if warnings is None else warnings
    env = build_env(app, facts, env_name)
    exec_mode, exec_mode_why = _exec_mode(app)
    filter_env = app.get("filter_env", parse_filter_env, ())
    autoscale = _autoscale(app, facts.cpus)
    appended = env_name is not None and app.value("append_env_to_name")
    spec = AppSpec(
        name=f"{app.name}-{env_name}" if appended else app.name,
        script=facts.script,
        argv=facts.argv,
        cwd=facts.cwd,
        env=env,
        instances=autoscale.min if autoscale else _instances(app, facts.cpus, warnings),
        exec_mode=exec_mode,
        exec_mode_why=exec_mode_why,
        node=facts.node,
        preload=app.value("preload"),
        interpreter=facts.interpreter,
        interpreter_args=facts.interpreter_args,
        args=facts.args,
        autorestart=app.value("autorestart"),
        restart_delay_ms=app.value("restart_delay"),
        exp_backoff_restart_delay_ms=app.value("exp_backoff_restart_delay"),
        max_restarts=app.value("max_restarts"),
        min_uptime_ms=app.value("min_uptime"),
        max_memory_restart_bytes=app.value("max_memory_restart"),
        kill_signal=app.get("kill_signal", parse_signal, facts.kill_signal),
        shutdown_with_message=app.value("shutdown_with_message"),
        kill_timeout_ms=app.value("kill_timeout"),
        listen_timeout_ms=app.value("listen_timeout"),
        wait_ready=app.value("wait_ready"),
        stop_exit_codes=app.value("stop_exit_codes"),
        treekill=app.value("treekill"),
        increment_var=app.value("increment_var"),
        instance_var=app.value("instance_var"),
        listen=_listen(app, exec_mode, env, facts),
        socket_sharing=app.value("socket_sharing"),
        health=app.value("health"),
        watch=_watch(app, facts.cwd),
        ignore_watch=app.value("ignore_watch"),
        watch_delay_ms=app.value("watch_delay"),
        cron_restart=app.value("cron_restart"),
        env_file=facts.env_file,
        autostart=app.value("autostart"),
        filter_env=filter_env if isinstance(filter_env, tuple) else (),
        inherit_env=filter_env is not True,
        run_as=facts.run_as,
        autoscale=autoscale,
        version=app.value("version"),
    )
    _check_conflicts(app, spec, warnings)
    return spec


_RANGE = re.compile(r"\s*([0-9]+)\s*-\s*(max|[0-9]+)\s*", re.ASCII | re.IGNORECASE)


def _autoscale(app: RawApp, cpus: int) -> AutoscaleSpec | None:
    """`instances: {min: 2, max: max}` or `"2-max"`: a range to autoscale in (`max` and 0
    count CPUs, the container's quota included, as for `instances`)."""
    value = app.values.get("instances")
    if isinstance(value, str) and (match := _RANGE.fullmatch(value)):
        value = {"min": match.group(1), "max": match.group(2)}
    if not isinstance(value, Mapping):
        return None
    if set(value) - {"min", "max"} or "max" not in value:
        raise app.error("instances", f"expected {{min: N, max: M}}, got {got(dict(value))}")
    try:
        low = parse_instances(value.get("min", 1), cpus)
        high = parse_instances(value["max"], cpus)
    except BadValue as exc:
        raise app.error("instances", str(exc)) from None
    if high < low:
        raise app.error("instances", f"expected min <= max, got {got(dict(value))}")
    return AutoscaleSpec(min=low, max=high)


_PARSE_INT_PREFIX = re.compile(r"\s*(-?[0-9]+)[^0-9].*", re.ASCII | re.DOTALL)


def _instances(app: RawApp, cpus: int, warnings: list[str]) -> int:
    """`instances`; text that starts with a number (`"4,"`) is read as pm2's parseInt reads it."""
    value = app.values.get("instances")
    if isinstance(value, str) and (prefix := _PARSE_INT_PREFIX.fullmatch(value)):
        warnings.append(f"{app.where}: instances: {value!r} read as {prefix.group(1)}, as pm2 does")
        value = prefix.group(1)
    if value is None:
        default: int = BY_NAME["instances"].default
        return default
    try:
        return parse_instances(value, cpus)
    except BadValue as exc:
        raise app.error("instances", str(exc)) from None
