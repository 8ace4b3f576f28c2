"""Every ecosystem key, declared once: its parser, default, aliases and one line of docs.

Like pm2's `lib/API/schema.json` or gunicorn's `Setting` classes, this table is the one
place a key is described. Validation (`spec.build_app_spec`), unknown-key suggestions,
`check` output and the key table of docs/configuration.md (`runtime.config.reference`)
all read it, so a default is written once. Pure: no I/O.

A key whose `parse` is None is read by `spec` itself, because its meaning depends on other
keys or on the machine (`script`, `instances`, `listen`...); its default is still stated
here, as `default` or in words as `default_doc`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.config import values as v

REQUIRED = object()  # the default of a key that must be given
DEFAULT_PORT = 3000  # $PORT when nothing sets it, as in pm2
SIGINT, SIGTERM = 2, 15  # POSIX signal numbers (signal(7)), for these pure modules


@dataclass(frozen=True, slots=True)
class Key:
    """One ecosystem key (snake_case, as pm2 spells it)."""

    name: str
    kind: str  # the value's form, as the docs show it
    doc: str
    default: Any = None  # the parsed default; None means "not set"
    parse: Callable[[object], Any] | None = None
    aliases: tuple[str, ...] = ()
    default_doc: str | None = None  # the default in words, when it is computed
    field: str | None = ""  # the AppSpec field it fills ("": its own name; None: none)
    unit: str = ""  # of the parsed value: "ms" for durations, "bytes" for sizes
    flags: tuple[str, ...] = ()  # its option in the direct form (`runtime app.js -i 4`)
    flag_value: object = None  # what a flag without a value stores (`--no-autorestart`: False)

    @property
    def spec_field(self) -> str | None:
        """The `AppSpec` attribute holding this key's value, if one does."""
        return self.name if self.field == "" else self.field

    @property
    def shown_default(self) -> str:
        """The default as the docs write it."""
        if self.default_doc is not None:
            return self.default_doc
        if self.default is REQUIRED:
            return "required"
        if self.default is None:
            return "-"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        if isinstance(self.default, tuple | frozenset) and not self.default:
            return "`[]`"
        return str(self.default)


KEYS: tuple[Key, ...] = (
    Key("script", "string", "file to run, resolved against `cwd`, else a command on `PATH`; a "
        "string with spaces that is not a file runs as `/bin/sh -c script`",
        default=REQUIRED, aliases=("cmd", "command", "exec")),
    Key("name", "string", "unique per file; no commas",
        default_doc="script basename without extension (first word of a command line)",
        flags=("-n", "--name")),
    Key("args", "list or string", "arguments after the script; a string is split shell-style",
        default=(), parse=v.parse_words),
    Key("interpreter", "string", "a name on `PATH` or a path (relative to `cwd`); `none` runs "
        "the script itself; `python` means the master's own Python",
        aliases=("exec_interpreter",), default_doc="by extension (below)",
        flags=("--interpreter",)),
    Key("interpreter_args", "list or string", "arguments between the interpreter and the script",
        default=(), parse=v.parse_words, aliases=("node_args",),
        flags=("--node-args", "--interpreter-args")),
    Key("cwd", "string", "relative to the ecosystem file's directory; must exist",
        default_doc="the ecosystem file's directory",
        flags=("--cwd",)),
    Key("instances", "int, string or mapping", "`N`; `max` or `0` = one per CPU; `-1` = CPUs - 1 "
        "(any `-n` = CPUs - n), at least 1. CPUs = min(affinity, cgroup quota). `{min: 2, max: "
        "max}` (or `2-max`) autoscales between the two on waiting connections and CPU "
        "(docs/scaling.md)", default=1,
        flags=("-i", "--instances")),
    Key("exec_mode", "`fork` \\| `cluster` (`fork_mode`, `cluster_mode`)", "`cluster` pre-binds "
        "`listen` (default `:$PORT`) and shares it with every instance; node and Python servers "
        "that `listen(PORT)` themselves serve on it (see `preload`)", parse=v.parse_exec_mode,
        default_doc="`cluster` when `instances` is given (as pm2), else `fork`",
        flags=("-x", "--exec-mode")),
    Key("execute_command", "bool", "true: fork mode even when `instances` is given (pm2's; "
        "`exec_mode` still wins)", default=False, parse=v.parse_bool, field=None),
    Key("preload", "bool", "in cluster mode, node (`NODE_OPTIONS`) and Python (`PYTHONPATH`) "
        "workers get the runtime's preload, so `listen(PORT)` / `bind((host, PORT))` on a "
        "pre-bound port adopts the inherited socket instead of failing with EADDRINUSE, and "
        "a stop signal the app does not handle drains in-flight requests before the worker "
        "dies (node: SIGINT, SIGTERM; Python: SIGTERM, at most 3 s); node workers get it in "
        "fork mode too. It also reports loop delay and handles to `show` (docs/metrics.md). "
        "False leaves the worker's environment alone (the app must use `LISTEN_FDS`)",
        default=True,
        parse=v.parse_bool),
    Key("env", "mapping", "the app's environment overlay; values become strings (bools "
        "`true`/`false`, objects as JSON, null `\"\"`)", default_doc="`{}`"),
    Key("env_file", "string", "dotenv file (`KEY=value`, `export`, quotes, `#` comments), "
        "relative to the ecosystem file", default_doc="`.env` if present"),
    Key("port", "int 1..65535", "sets `PORT` in the env (an error if `env` also sets `PORT`)",
        parse=v.parse_port, field=None),
    Key("max_memory_restart", "size", "restart an instance whose memory (RSS of its process "
        "tree, read every second, every 250 ms once over 3/4 of the limit) passes this",
        parse=v.parse_bytes, default_doc="none",
        field="max_memory_restart_bytes", unit="bytes",
        flags=("--max-memory-restart",)),
    Key("restart_delay", "duration", "fixed wait before a crash restart", default=0,
        parse=v.parse_duration_ms, field="restart_delay_ms", unit="ms",
        flags=("--restart-delay",)),
    Key("exp_backoff_restart_delay", "duration", "first crash-restart wait, growing on each "
        "unstable restart (see the restart policy). Conflicts with `restart_delay`", default=0,
        parse=v.parse_duration_ms, field="exp_backoff_restart_delay_ms", unit="ms",
        default_doc="0 (off)",
        flags=("--exp-backoff-restart-delay",)),
    Key("autorestart", "bool", "false: an exit leaves the app stopped", default=True,
        parse=v.parse_bool,
        flags=("--no-autorestart",), flag_value=False),
    Key("max_restarts", "int ≥ 0", "unstable restarts before the app is `errored`", default=16,
        parse=v.parse_int,
        flags=("--max-restarts",)),
    Key("min_uptime", "duration", "an exit sooner than this counts as unstable", default=1000,
        parse=v.parse_duration_ms, field="min_uptime_ms", unit="ms",
        flags=("--min-uptime",)),
    Key("kill_signal", "signal name or number", "what a graceful stop sends first (`SIGINT`, "
        "`SIGTERM`, `SIGQUIT`, ...)", parse=v.parse_signal,
        default_doc="`SIGINT` for node apps (pm2's; `$PM2_KILL_SIGNAL` when set), else `SIGTERM`",
        flags=("--kill-signal",)),
    Key("shutdown_with_message", "bool", "stop a node worker with the IPC message `'shutdown'` "
        "instead of `kill_signal` (a worker without the IPC channel gets the signal)",
        default=False, parse=v.parse_bool,
        flags=("--shutdown-with-message",), flag_value=True),
    Key("kill_timeout", "duration", "stop signal → SIGKILL grace", default=5000,
        parse=v.parse_duration_ms, field="kill_timeout_ms", unit="ms",
        flags=("--kill-timeout",)),
    Key("listen_timeout", "duration", "longest wait for readiness at start and reload",
        default=3000, parse=v.parse_duration_ms, field="listen_timeout_ms", unit="ms",
        flags=("--listen-timeout",)),
    Key("wait_ready", "bool", "wait for `process.send('ready')` (node, as pm2) or `READY=1` "
        "(sd_notify) before an instance counts as up",
        default=False, parse=v.parse_bool,
        flags=("--wait-ready",), flag_value=True),
    Key("stop_exit_codes", "int or list (0..255)", "exit codes that mean \"done\", not "
        "\"crashed\"", default=frozenset(), parse=v.parse_exit_codes,
        flags=("--stop-exit-codes",)),
    Key("treekill", "bool", "signal the worker's whole process group", default=True,
        parse=v.parse_bool),
    Key("increment_var", "env var name", "each instance gets base + instance in this variable "
        "(e.g. `PORT`)", parse=v.parse_var_name,
        flags=("--increment-var",)),
    Key("instance_var", "env var name", "also holds the instance number. Must differ from "
        "`increment_var`", default="NODE_APP_INSTANCE", parse=v.parse_var_name),
    Key("listen", "string or list", "addresses to pre-bind: `\":8000\"`, `\"0.0.0.0:8000\"`, "
        "`\"[::]:8000\"`, `\"unix:/path\"`. `$PORT` is replaced by the app's `PORT` (app env, "
        "else the master's environment, else 3000)",
        default_doc="cluster: `[\":$PORT\"]`, fork: none",
        flags=("--listen",)),
    Key("socket_sharing", "`shared` \\| `reuseport`", "one socket for all instances, or one "
        "`SO_REUSEPORT` socket per slot. An error without `listen`", default="reuseport",
        parse=v.parse_socket_sharing),
    Key("version", "string", "the app's version in `list` and `show`; wins over the version "
        "of a `package.json` or `pyproject.toml` in `cwd` (quote it in YAML: `'1.10'`)",
        parse=v.parse_text, default_doc="read from `cwd`'s `package.json` or `pyproject.toml`"),
    Key("health", "path starting with `/`", "HTTP path that must answer before an instance is "
        "ready", parse=v.parse_health,
        flags=("--health",)),
    Key("watch", "bool, string or list", "`true` watches `cwd`; paths are relative to `cwd`",
        default_doc="false",
        flags=("--watch",), flag_value=True),
    Key("ignore_watch", "string or list", "patterns not to watch", default=(),
        parse=v.parse_texts, flags=("--ignore-watch",)),
    Key("watch_delay", "duration", "debounce before a watch restart", default=0,
        parse=v.parse_duration_ms, field="watch_delay_ms", unit="ms",
        flags=("--watch-delay",)),
    Key("cron_restart", "string", "cron expression for periodic restarts; `0` disables (as pm2)",
        parse=v.parse_cron, aliases=("cron",),
        flags=("-c", "--cron", "--cron-restart")),
    Key("autostart", "bool", "false: the app is registered as stopped and starts with "
        "`runtime start NAME`", default=True, parse=v.parse_bool,
        flags=("--no-autostart",), flag_value=False),
    Key("filter_env", "bool, string or list", "leave the master's variables whose names contain "
        "one of these out of the app's environment; `true` leaves them all out (pm2's "
        "documented meaning)", default=(), parse=v.parse_filter_env,
        default_doc="`[]`"),
    Key("append_env_to_name", "bool", "with `--env NAME`, the app is called `app-NAME`",
        default=False, parse=v.parse_bool, field=None),
    Key("uid", "user name or id", "run the app as this user (its primary group and HOME "
        "unless `gid` is given); the runtime must run as root", parse=v.parse_user,
        aliases=("user",), field=None,
        flags=("--uid", "--user")),
    Key("gid", "group name or id", "run the app with this group; the runtime must run as root",
        parse=v.parse_user, field=None,
        flags=("--gid",)),
)  # fmt: skip

# pm2 keys that mean nothing in a foreground container runtime, each with why.
_LOGS = "logs go to stdout as one line per record"
_DAEMON = "there is no pm2 daemon or pm2.io agent"
NO_EFFECT: dict[str, str] = {
    **dict.fromkeys(
        ("merge_logs", "combine_logs", "out_file", "out", "output", "out_log", "error_file",
         "error", "err", "err_file", "err_log", "log_file", "log", "log_date_format", "time",
         "log_type", "disable_logs"),
        _LOGS,
    ),
    **dict.fromkeys(
        ("namespace", "pid_file", "pid", "vizion", "force", "name_prefix", "pmx", "automation",
         "trace", "disable_trace", "windowsHide"),
        _DAEMON,
    ),
    "source_map_support": "node options are the app's own (use node_args)",
    "disable_source_map_support": "node options are the app's own (use node_args)",
    "watch_options": "watching uses inotify with its own rules (ignore_watch, watch_delay)",
    "kill_retry_time": "the stop escalates once, after kill_timeout",
    **dict.fromkeys(
        ("v8", "event_loop_inspector", "deep_monitoring", "io", "install_url", "post_update",
         "username", "write", "instance_id", "increment_instances"),
        "pm2.io monitoring and pm2's own deploy and state keys",
    ),
}  # fmt: skip

BY_NAME: dict[str, Key] = {key.name: key for key in KEYS}


def camel(snake: str) -> str:
    """`max_memory_restart` -> `maxMemoryRestart` (pm2 accepts both spellings)."""
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


def _aliases() -> dict[str, str]:
    """Every other spelling of a key: pm2's aliases and camelCase forms of both."""
    out: dict[str, str] = {}
    for key in KEYS:
        for spelling in (key.name, *key.aliases):
            out[spelling] = key.name
            out[camel(spelling)] = key.name
    return out


CANONICAL: dict[str, str] = _aliases()  # any spelling -> the key's name


def default(name: str) -> Any:
    """The default of key `name` (for records that mirror a key, such as RestartPolicy)."""
    return BY_NAME[name].default


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])([A-Z])")


def snake(spelled: str) -> str:
    """`outFile` -> `out_file` (pm2 reads every key in either spelling)."""
    return _CAMEL_HUMP.sub(r"_\1", spelled).lower()


def unknown_key_warning(where: str, spelled: str) -> str:
    """The warning for a key that is not in the table: no effect here, or a suggestion."""
    reason = NO_EFFECT.get(spelled) or NO_EFFECT.get(snake(spelled))
    if reason is not None:
        return f"{where}: pm2 key {spelled!r} has no effect here ({reason})"
    import difflib  # only when there is an unknown key to suggest a name for

    close = difflib.get_close_matches(spelled, list(CANONICAL), n=1)
    hint = f" (did you mean '{CANONICAL[close[0]]}'?)" if close else ""
    return f"{where}: unknown key {spelled!r}{hint}"
