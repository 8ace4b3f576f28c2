"""Typed, validated description of one app: what the supervisor runs (pure: no I/O here).

`config` reads the file and finds out facts about the machine (cpu count, the
resolved argv, the env file's text); everything that only looks at values lives
here, so it can be tested without a file system.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping

from runtime.errors import ConfigError
from runtime.record import field, record

TYPE_CHECKING = False  # typing stays unimported at run time: it is on the start-up path
if TYPE_CHECKING:
    import re
    from typing import Literal, TypeVar

    ExecMode = Literal["fork", "cluster"]
    SocketSharing = Literal["shared", "reuseport"]
    T = TypeVar("T")
    D = TypeVar("D")

# reuseport: per-slot SO_REUSEPORT sockets matched bare processes (within noise) and
# spread keep-alive load evenly, where one shared socket often gave it all to one worker
# (bench/RESULTS.md, "Cluster throughput" and "Fairness").
DEFAULT_SOCKET_SHARING: SocketSharing = "reuseport"

SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY")


def is_secret(key: str) -> bool:
    """Env keys that must never be printed (DESIGN: SECRET, TOKEN, PASSWORD, KEY)."""
    upper = key.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` safe to print."""
    return {k: ("****" if is_secret(k) else v) for k, v in env.items()}


@record
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
    socket_sharing: SocketSharing = DEFAULT_SOCKET_SHARING
    health: str | None = None
    watch: tuple[str, ...] = ()
    ignore_watch: tuple[str, ...] = ()
    watch_delay_ms: int = 0
    cron_restart: str | None = None
    env_file: str | None = None


# --- keys -------------------------------------------------------------------------

KNOWN_KEYS: tuple[str, ...] = (
    "name", "script", "args", "interpreter", "interpreter_args", "cwd", "instances",
    "exec_mode", "env", "env_file", "max_memory_restart", "restart_delay",
    "exp_backoff_restart_delay", "autorestart", "max_restarts", "min_uptime",
    "kill_timeout", "listen_timeout", "wait_ready", "watch", "ignore_watch", "watch_delay",
    "cron_restart", "stop_exit_codes", "increment_var", "instance_var", "treekill",
    "listen", "socket_sharing", "health", "port",
)  # fmt: skip

_PM2_ALIASES = {
    "cmd": "script",
    "command": "script",
    "exec": "script",
    "exec_interpreter": "interpreter",
    "node_args": "interpreter_args",
    "cron": "cron_restart",
}

# pm2 options that mean nothing in a foreground container runtime (logs go to stdout).
PM2_IGNORED_KEYS = frozenset((
    "namespace", "autostart", "filter_env", "merge_logs", "combine_logs", "out_file", "out",
    "output", "out_log", "error_file", "error", "err", "err_file", "err_log", "log_file", "log",
    "pid_file", "pid", "log_date_format", "time", "log_type", "disable_logs", "vizion",
    "source_map_support", "disable_source_map_support", "force", "append_env_to_name",
    "watch_options", "kill_retry_time", "shutdown_with_message", "uid", "user", "gid",
    "name_prefix", "windowsHide", "pmx", "automation", "trace", "disable_trace",
))  # fmt: skip


def _camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(part.title() for part in rest)


ALIASES: dict[str, str] = {
    **_PM2_ALIASES,
    **{_camel(k): k for k in KNOWN_KEYS if "_" in k},
    **{_camel(a): k for a, k in _PM2_ALIASES.items() if "_" in a},
}


class BadValue(ValueError):
    """A value of the wrong shape; the message is `expected ..., got ...`, the caller adds where."""


def _got(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- unit and type parsers (value -> python value, raising BadValue) ------------

# Values are read with string methods, and the few regular expressions left import `re`
# where they are used: its import costs start-up time (bench/RESULTS.md, "Start-up").
_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DURATION_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MAX_DURATION_MS = 2**31 - 1  # about 24 days: what a timer can hold everywhere
MAX_INSTANCES = 4096


def _match(pattern: str, text: str) -> re.Match[str] | None:
    import re  # here, not at the top: most ecosystems have no value that needs it

    return re.match(pattern, text)


def ascii_digits(text: str) -> bool:
    """Only `0`-`9`, at least one (`str.isdigit` alone takes other scripts' digits too)."""
    return text.isascii() and text.isdigit()


def is_var_name(text: str) -> bool:
    """An environment variable name, `[A-Za-z_][A-Za-z0-9_]*`."""
    return text.isascii() and text.isidentifier()


def _int_text(text: str, max_digits: int) -> int | None:
    """`-?[0-9]{1,max_digits}` as an int (ASCII digits only), else None."""
    digits = text[1:] if text.startswith("-") else text
    if len(digits) > max_digits or not ascii_digits(digits):
        return None
    return int(text)


_INFINITY = float("inf")


def _number_and_unit(text: str) -> tuple[float, str] | None:
    """`12`, `1.5`, `512M`, `5 s`: the number (digits, optionally `.digits`) and the rest,
    lower-cased and stripped; None when the text does not start with such a number."""
    end = 0
    while end < len(text) and text[end] in "0123456789.":
        end += 1
    whole, dot, fraction = text[:end].partition(".")
    if not ascii_digits(whole) or (dot and not ascii_digits(fraction)):
        return None
    return float(text[:end]), text[end:].strip().lower()


def _split(pattern: str, text: str) -> list[str]:
    import re

    return re.split(pattern, text, maxsplit=1)


def _number(value: object) -> float | None:
    """A finite, non-negative number from an int, float or numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and 0 <= value < _INFINITY:  # also refuses nan
        return float(value)
    return None


def parse_bytes(value: object) -> int:
    """A memory size: a bare number is bytes, `K`/`M`/`G` (or `KB`...) multiply by 1024."""
    expected = f"expected a size such as 512M, 1G or a number of bytes, got {_got(value)}"
    number, unit = _number(value), ""
    if isinstance(value, str) and (parts := _number_and_unit(value.strip())):
        number, unit = parts[0], parts[1].removesuffix("b")
    if number is None or unit not in _BYTE_UNITS or number * _BYTE_UNITS[unit] < 1:
        raise BadValue(expected)
    return int(number * _BYTE_UNITS[unit])


def parse_duration_ms(value: object) -> int:
    """A duration: a bare number is milliseconds, or `500ms`, `5s`, `2m`, `1h`."""
    expected = f"expected a duration such as 500ms, 5s, 2m or milliseconds, got {_got(value)}"
    number, unit = _number(value), ""
    if isinstance(value, str) and (parts := _number_and_unit(value.strip())):
        number, unit = parts
    if number is None or unit not in _DURATION_UNITS:
        raise BadValue(expected)
    ms = number * _DURATION_UNITS[unit]
    if ms > MAX_DURATION_MS:
        raise BadValue(f"expected at most {MAX_DURATION_MS} ms, got {_got(value)}")
    return round(ms)


def parse_int(value: object, *, minimum: int = 0) -> int:
    """An integer (numeric strings too) of at least `minimum`."""
    if isinstance(value, str) and (number := _int_text(value.strip(), 18)) is not None:
        value = number
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadValue(f"expected an integer of at least {minimum}, got {_got(value)}")
    return value


def parse_instances(value: object, cpus: int) -> int:
    """`N`, `max` or 0 (one per cpu), -1 (cpus minus one, at least 1), as pm2 counts them."""
    expected = f"expected an integer, 'max' or -1, got {_got(value)}"
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "max":
            return cpus
        number = _int_text(text, 9)
        if number is None:
            raise BadValue(expected)
        value = number
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadValue(expected)
    count = cpus if value == 0 else max(1, cpus + value) if value < 0 else value
    if count > MAX_INSTANCES:
        raise BadValue(f"expected at most {MAX_INSTANCES} instances, got {_got(value)}")
    return count


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_bool(value: object) -> bool:
    """A boolean; the strings true/false/yes/no/1/0 too, since `${VAR}` expands to text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadValue(f"expected true or false, got {_got(value)}")


def parse_text(value: object) -> str:
    """A non-empty string; numbers are accepted and written as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise BadValue(f"expected a non-empty string, got {_got(value)}")
    return value


def parse_words(value: object) -> tuple[str, ...]:
    """A list of arguments, or one string split the way a shell would."""
    if isinstance(value, str):
        try:
            import shlex

            return tuple(shlex.split(value))
        except ValueError as exc:
            raise BadValue(f"expected shell words, got {_got(value)} ({exc})") from None
    if isinstance(value, list | tuple):
        words = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise BadValue(f"expected a list of strings, got {_got(value)}")
            words.append(str(item))
        return tuple(words)
    raise BadValue(f"expected a list of strings or a string, got {_got(value)}")


def parse_texts(value: object) -> tuple[str, ...]:
    """One string or a list of non-empty strings."""
    items = value if isinstance(value, list | tuple) else [value]
    try:
        return tuple(parse_text(item) for item in items)
    except BadValue:
        raise BadValue(f"expected a string or a list of strings, got {_got(value)}") from None


def parse_exec_mode(value: object) -> ExecMode:
    """`fork` or `cluster` (pm2's `fork_mode` / `cluster_mode` too)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("fork", "fork_mode"):
        return "fork"
    if text in ("cluster", "cluster_mode"):
        return "cluster"
    raise BadValue(f"expected 'fork' or 'cluster', got {_got(value)}")


def parse_socket_sharing(value: object) -> SocketSharing:
    """`shared` (one socket for every worker) or `reuseport` (one per slot)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "shared":
        return "shared"
    if text == "reuseport":
        return "reuseport"
    raise BadValue(f"expected 'shared' or 'reuseport', got {_got(value)}")


def parse_exit_codes(value: object) -> frozenset[int]:
    """One exit code or a list of them, each 0..255."""
    items = value if isinstance(value, list | tuple) else [value]
    try:
        codes = frozenset(parse_int(item) for item in items)
    except BadValue:
        codes = frozenset({256})
    if any(code > 255 for code in codes):
        raise BadValue(f"expected an exit code 0..255 or a list of them, got {_got(value)}")
    return codes


def parse_var_name(value: object) -> str:
    """An environment variable name."""
    if not isinstance(value, str) or not is_var_name(value):
        raise BadValue(f"expected an environment variable name, got {_got(value)}")
    return value


def parse_health(value: object) -> str:
    """An HTTP path, starting with `/`."""
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise BadValue(f"expected an HTTP path starting with '/', got {_got(value)}")
    return value


def parse_cron(value: object) -> str | None:
    """A cron expression kept as text (validated by the cron module); 0 disables, as in pm2."""
    if value in (0, "0") and not isinstance(value, bool):
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"expected a cron expression such as '0 3 * * *', got {_got(value)}")
    from runtime.config.cron import validate_cron  # croniter is imported only by apps that use cron

    problem = validate_cron(value.strip())
    if problem is not None:
        raise BadValue(problem)
    return value.strip()


def parse_port(value: object) -> int:
    """A TCP port number, 1..65535."""
    try:
        port = parse_int(value, minimum=1)
    except BadValue:
        port = 0
    if not 1 <= port <= 65535:
        raise BadValue(f"expected a port 1..65535, got {_got(value)}")
    return port


def env_value(value: object) -> str:
    """How pm2 turns an env value into text: scalars as written, objects as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict | list | tuple):
        import json

        return json.dumps(value, default=str)
    return str(value)


def parse_env(value: object) -> dict[str, str]:
    """A mapping of variable names to values; every value becomes a string."""
    if not isinstance(value, Mapping):
        raise BadValue(f"expected a mapping of variables, got {_got(value)}")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise BadValue(f"expected variable names without '=', got {_got(key)}")
        text = env_value(item)
        if "\0" in text:
            raise BadValue(f"expected a value without NUL bytes for {key}, got {_got(item)}")
        env[key] = text
    return env


_DOTENV_LINE = r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$"


def _dotenv_value(raw: str) -> str | None:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0 or raw[end + 1 :].strip()[:1] not in ("", "#"):
            return None
        inner = raw[1:end]
        if quote == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    return _split(r"\s+#", raw)[0].strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """`KEY=value` lines (`export`, quotes, comments) as docker and python-dotenv read them."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _match(_DOTENV_LINE, stripped)
        value = _dotenv_value(match.group(2)) if match else None
        if match is None or value is None:
            raise BadValue(f"line {number}: expected KEY=value, got {_got(stripped)}")
        env[match.group(1)] = value
    return env


# --- one app ------------------------------------------------------------------------


def default_name(script: str) -> str:
    """The script's basename without extension (the first word of a command line)."""
    words = script.split()
    base = posixpath.basename(words[0].rstrip("/")) if words else script
    return posixpath.splitext(base)[0] or base or script


@record
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


def _unknown_key_warning(where: str, key: str) -> str:
    if key in PM2_IGNORED_KEYS:
        return f"{where}: pm2 key {key!r} has no effect here and is ignored"
    import difflib  # only when there is an unknown key to suggest a name for

    close = difflib.get_close_matches(key, [*KNOWN_KEYS, *ALIASES], n=1)
    hint = f" (did you mean '{ALIASES.get(close[0], close[0])}'?)" if close else ""
    return f"{where}: unknown key {key!r}{hint}"


def _showable(name: str) -> bool:
    """A name that can go inside an error line as it is (no spaces, newlines or controls)."""
    return bool(name) and name.isprintable() and not any(c.isspace() for c in name)


def _canonical(raw: Mapping[object, object], file: str, index: int | None) -> RawApp:
    values: dict[str, object] = {}
    spelled: dict[str, str] = {}
    envs: dict[str, object] = {}
    unknown: list[str] = []
    hint = raw.get("name")
    name = hint if isinstance(hint, str) and _showable(hint) else None
    for key, value in raw.items():
        if not isinstance(key, str):
            message = f"expected string keys, got {_got(key)}"
            raise ConfigError(file, message, index=index, app=name)
        canonical = key if key in KNOWN_KEYS else ALIASES.get(key)
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
        message = f"expected a mapping of app settings, got {_got(raw)}"
        raise ConfigError(file, message, index=index)
    app = _canonical(raw, file, index)
    script = app.values.get("script")
    if script is None:
        raise app.error("script", "expected the file or command to run, got nothing")
    if not isinstance(script, str) or not script.strip() or "\0" in script:
        raise app.error("script", f"expected a file or a command line, got {_got(script)}")
    named = RawApp(file, index, app.name or default_name(script), app.values, app.envs)
    name = named.get("name", parse_text, named.name).strip()
    if "," in name or not _showable(name):
        message = f"expected a name without commas or spaces, got {name!r}"
        shown = name if _showable(name) else None
        raise ConfigError(file, message, index=index, app=shown, key="name")
    where = _where(file, index, name)
    warnings = tuple(_unknown_key_warning(where, key) for key in app.warnings)
    return RawApp(file, index, name, app.values, app.envs, warnings)


@record
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
    cpus: int = 1
    default_port: str = "3000"


def build_env(app: RawApp, facts: Resolved, env_name: str | None) -> dict[str, str]:
    """env_file < port < env < env_<name>; Python apps get PYTHONUNBUFFERED=1 unless set."""
    env = dict(facts.env_file_env)
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
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return (cwd,) if parse_bool(value) else ()
    paths = app.get("watch", parse_texts, ())
    return tuple(posixpath.normpath(posixpath.join(cwd, p)) for p in paths)


def _check_conflicts(app: RawApp, spec: AppSpec) -> None:
    if spec.restart_delay_ms and spec.exp_backoff_restart_delay_ms:
        raise app.error("exp_backoff_restart_delay", "conflicts with restart_delay (set one)")
    if spec.increment_var is not None and spec.increment_var == spec.instance_var:
        raise app.error("increment_var", f"conflicts with instance_var {spec.instance_var!r}")
    if app.values.get("socket_sharing") is not None and not spec.listen:
        raise app.error("socket_sharing", "has no effect without listen (set listen or drop it)")


def build_app_spec(app: RawApp, facts: Resolved, *, env_name: str | None = None) -> AppSpec:
    """Validate every setting of one app into an `AppSpec`, or raise ConfigError."""
    env = build_env(app, facts, env_name)
    exec_mode: ExecMode = app.get("exec_mode", parse_exec_mode, "fork")
    duration = parse_duration_ms
    spec = AppSpec(
        name=app.name,
        script=facts.script,
        argv=facts.argv,
        cwd=facts.cwd,
        env=env,
        instances=app.get("instances", lambda v: parse_instances(v, facts.cpus), 1),
        exec_mode=exec_mode,
        interpreter=facts.interpreter,
        interpreter_args=facts.interpreter_args,
        args=facts.args,
        autorestart=app.get("autorestart", parse_bool, True),
        restart_delay_ms=app.get("restart_delay", duration, 0),
        exp_backoff_restart_delay_ms=app.get("exp_backoff_restart_delay", duration, 0),
        max_restarts=app.get("max_restarts", parse_int, 16),
        min_uptime_ms=app.get("min_uptime", duration, 1000),
        max_memory_restart_bytes=app.get("max_memory_restart", parse_bytes, None),
        kill_timeout_ms=app.get("kill_timeout", duration, 5000),
        listen_timeout_ms=app.get("listen_timeout", duration, 3000),
        wait_ready=app.get("wait_ready", parse_bool, False),
        stop_exit_codes=app.get("stop_exit_codes", parse_exit_codes, frozenset()),
        treekill=app.get("treekill", parse_bool, True),
        increment_var=app.get("increment_var", parse_var_name, None),
        instance_var=app.get("instance_var", parse_var_name, "NODE_APP_INSTANCE"),
        listen=_listen(app, exec_mode, env, facts),
        socket_sharing=app.get("socket_sharing", parse_socket_sharing, DEFAULT_SOCKET_SHARING),
        health=app.get("health", parse_health, None),
        watch=_watch(app, facts.cwd),
        ignore_watch=app.get("ignore_watch", parse_texts, ()),
        watch_delay_ms=app.get("watch_delay", duration, 0),
        cron_restart=app.get("cron_restart", parse_cron, None),
        env_file=facts.env_file,
    )
    _check_conflicts(app, spec)
    return spec
