"""Read an ecosystem file (YAML, JSON, TOML, JS, Procfile) into validated `AppSpec`s (edge).

Reading files, running `node`, looking things up on PATH and counting CPUs live
here; what a value means is decided by the pure functions of `spec`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence

from runtime.config.cpus import cpu_count
from runtime.config.spec import (
    AppSpec,
    BadValue,
    RawApp,
    Resolved,
    build_app_spec,
    is_var_name,
    mask_env,
    normalize_app,
    parse_dotenv,
    parse_text,
    parse_words,
)
from runtime.errors import ConfigError
from runtime.record import fields, record

COMMAND_LINE = "<command line>"
MAX_DEPTH = 64
NODE_TIMEOUT_S = 30
PROCFILE_WEB_PORT = "5000"
DEFAULT_PORT = "3000"
DEFAULT_ENV_FILE = ".env"

INTERPRETERS = {
    ".py": "python",
    ".js": "node",
    ".mjs": "node",
    ".cjs": "node",
    ".sh": "bash",
    ".rb": "ruby",
    ".php": "php",
    ".pl": "perl",
    ".coffee": "coffee",
}


@record
class Ecosystem:
    """Every selected app of one ecosystem file, validated, plus the warnings to show."""

    file: str
    apps: tuple[AppSpec, ...]
    warnings: tuple[str, ...]


# --- reading the document ----------------------------------------------------------


def file_kind(path: str) -> str:
    """`yaml`, `json`, `toml`, `js` or `procfile`, from the file name alone."""
    name = os.path.basename(path)
    lower = name.lower()
    if name == "Procfile" or lower.endswith(".procfile"):
        return "procfile"
    for suffixes, kind in (
        ((".yml", ".yaml"), "yaml"),
        ((".json",), "json"),
        ((".toml",), "toml"),
        ((".js", ".cjs"), "js"),
    ):
        if lower.endswith(suffixes):
            return kind
    message = "expected a .yml, .yaml, .json, .toml, .js, .cjs file or a Procfile"
    raise ConfigError(path, message)


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise ConfigError(path, "no such file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"expected UTF-8 text, got {exc.reason}") from None
    except OSError as exc:
        raise ConfigError(path, f"cannot read it: {exc.strerror or exc}") from None


def _parse_yaml(text: str, label: str) -> object:
    from runtime.yamlite import UNSURE, load

    value = load(text)  # the usual shape, without PyYAML's import (runtime.yamlite)
    if value is not UNSURE:
        return value
    import yaml  # each format's parser is imported only for files of that format

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader, C or Python
    except yaml.MarkedYAMLError as exc:
        line = f"line {exc.problem_mark.line + 1}: " if exc.problem_mark else ""
        raise ConfigError(label, f"{line}invalid YAML: {exc.problem or exc.context}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise ConfigError(label, f"invalid YAML: {exc}") from None


def _parse_json(text: str, label: str) -> object:
    from runtime.jsonline import loads

    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:
        lineno, msg = getattr(exc, "lineno", None), getattr(exc, "msg", None)
        if lineno is not None and msg is not None:  # json's JSONDecodeError
            raise ConfigError(label, f"line {lineno}: invalid JSON: {msg}") from None
        raise ConfigError(label, f"invalid JSON: {exc}") from None


def _parse_toml(text: str, label: str) -> object:
    import tomllib

    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(label, f"invalid TOML: {exc}") from None


_NODE_PROGRAM = (
    "const m = require(process.argv[1]);"
    "const c = (m && m.__esModule && m.default) ? m.default : m;"
    "process.stdout.write(JSON.stringify(c === undefined ? null : c));"
)


def _node_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    import re

    errors = [line for line in lines if re.match(r"^[A-Za-z]*Error\b", line)]
    return (errors or lines or ["no output"])[0]


def _parse_js(path: str, label: str, environ: Mapping[str, str]) -> object:
    import subprocess

    node = _which("node", environ.get("PATH", os.defpath))
    if node is None:
        name = os.path.basename(path)
        raise ConfigError(label, f"node is not installed; it is needed to read {name}")
    try:
        done = subprocess.run(
            [node, "-e", _NODE_PROGRAM, os.path.abspath(path)],
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT_S,
            cwd=os.path.dirname(os.path.abspath(path)),
            env=dict(environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(label, f"node did not finish reading it in {NODE_TIMEOUT_S} s") from None
    except OSError as exc:
        raise ConfigError(label, f"cannot run node: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise ConfigError(label, f"node could not load it: {_node_error(done.stderr)}")
    return _parse_json(done.stdout, label)


def _parse_procfile(text: str, label: str, environ: Mapping[str, str]) -> list[object]:
    apps: list[object] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, command = stripped.partition(":")
        name, command = name.rstrip(), command.strip()
        process_type = name.isascii() and _word(name.replace("-", "_"))  # [A-Za-z0-9_-]+
        if not colon or not command or not process_type:
            message = f"line {number}: expected 'type: command', got {stripped[:60]!r}"
            raise ConfigError(label, message)
        app: dict[str, object] = {"name": name, "script": command}
        if name == "web":
            app["env"] = {"PORT": environ.get("PORT") or PROCFILE_WEB_PORT}
        apps.append(app)
    if not apps:
        raise ConfigError(label, "expected at least one 'type: command' line, got none")
    return apps


# --- ${VAR} expansion and the document's shape ----------------------------------------


def _word(text: str) -> bool:
    """Letters, digits and `_` only, at least one (any script; callers check ASCII)."""
    return bool(text) and text.replace("_", "a").isalnum()


def _variable(text: str, start: int) -> tuple[str, str | None, str, int] | None:
    """`NAME}`, `NAME:-default}` or `NAME-default}` at text[start:]: (name, operator,
    default, end), or None when it is not one (the `${` is then left as it is)."""
    end = start
    while end < len(text) and text[end].isascii() and _word(text[end]):
        end += 1
    name = text[start:end]
    if not is_var_name(name):
        return None
    op = ":-" if text.startswith(":-", end) else "-" if text.startswith("-", end) else None
    close = text.find("}", end)
    if close < 0 or (op is None and close != end):
        return None
    default = text[end + len(op) : close] if op else ""
    return name, op, default, close + 1


def _expand_text(text: str, environ: Mapping[str, str], missing: set[str]) -> str:
    """One string's `${...}` replaced (see expand_vars); a plain scan, not `re`."""
    out: list[str] = []
    i = 0
    while (at := text.find("$", i)) >= 0:
        out.append(text[i:at])
        if text.startswith("$${", at):
            out.append("${")
            i = at + 3
            continue
        found = _variable(text, at + 2) if text.startswith("${", at) else None
        if found is None:
            out.append("$")
            i = at + 1
            continue
        name, op, default, i = found
        current = environ.get(name)
        if (op == ":-" and not current) or (op == "-" and current is None):
            out.append(default)
        else:
            if current is None:
                missing.add(name)
            out.append(current or "")
    out.append(text[i:])
    return "".join(out)


def expand_vars(
    value: object, environ: Mapping[str, str], missing: set[str], depth: int = 0
) -> object:
    """`${VAR}`, `${VAR:-default}` (unset or empty) and `${VAR-default}` (unset) in every string.

    `$${` is a literal `${`. Unset variables without a default become "" and are
    added to `missing` so the caller can warn.
    """
    if depth > MAX_DEPTH:
        raise BadValue(f"expected at most {MAX_DEPTH} levels of nesting")
    if isinstance(value, str) and "${" in value:
        return _expand_text(value, environ, missing)
    if isinstance(value, dict):
        return {k: expand_vars(v, environ, missing, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_vars(v, environ, missing, depth + 1) for v in value]
    return value


def _app_list(doc: object, label: str, warnings: list[str]) -> list[object]:
    """The apps of `{apps: [...]}`, a bare list, or a single app object (as pm2 reads them)."""
    if isinstance(doc, list):
        apps: object = doc
    elif isinstance(doc, dict) and ("apps" in doc or "pm2" in doc):
        key = "apps" if "apps" in doc else "pm2"
        apps = doc[key]
        for other in doc:
            if other != key:
                warnings.append(f"{label}: unknown top-level key {str(other)!r} (ignored)")
        if isinstance(apps, dict):
            apps = [apps]
    elif isinstance(doc, dict):
        apps = [doc]
    else:
        got = "an empty file" if doc is None else repr(doc)[:60]
        raise ConfigError(label, f"expected 'apps:' with a list of apps, got {got}")
    if not isinstance(apps, list):
        raise ConfigError(label, f"expected a list of apps, got {repr(apps)[:60]}", key="apps")
    if not apps:
        raise ConfigError(label, "expected at least one app, got an empty list", key="apps")
    return apps


# --- resolving one app's command line ------------------------------------------------


def _which(name: str, path: str) -> str | None:
    """`shutil.which` without importing shutil (and the compression modules it pulls in)."""
    if "/" in name or not name:
        return None
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _find_interpreter(app: RawApp, name: str, path: str, script: str, cwd: str) -> str:
    if name == "python" and sys.executable:
        return sys.executable
    if "/" in name:
        full = os.path.normpath(os.path.join(cwd, os.path.expanduser(name)))
        found: str | None = full if os.access(full, os.X_OK) and os.path.isfile(full) else None
    else:
        found = _which(name, path) or (_which("python3", path) if name == "python" else None)
    if found is None:
        raise app.error("interpreter", f"{name} is not on PATH (needed to run {script!r})")
    return found


def _no_interpreter_args(app: RawApp, iargs: tuple[str, ...], why: str) -> None:
    if iargs:
        raise app.error("interpreter_args", f"conflicts with {why} (no interpreter to pass them)")


_SHELL_KEYWORDS = frozenset(("exec", "cd", "export", "set", "if", "for", "while", "case", "{"))


def _has_control_operators(command: str) -> bool:
    """Unquoted `;`, `&`, `|`, `(`, `)`, newlines or `#`, or a leading shell keyword.

    A plain scan rather than `shlex` (whose import costs start-up time); when in doubt
    (unbalanced quotes, a comment) the answer is yes, so the line runs as it is.
    """
    words = command.split()
    if not words or words[0] in _SHELL_KEYWORDS:
        return True
    quote, escaped = "", False
    for c in command:
        if escaped:
            escaped = False
        elif c == "\\" and quote != "'":
            escaped = True
        elif quote:
            quote = "" if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in _CONTROL_CHARS:
            return True
    return bool(quote or escaped)


_CONTROL_CHARS = frozenset(";&|()\n#")


def shell_argv(command: str) -> tuple[str, ...]:
    """`/bin/sh -c`, with `exec` in front of a simple command line.

    `exec` makes the program itself the worker process: it gets the signals, its exit
    status is the worker's, and LISTEN_PID (the shell's pid) is its own pid, which
    gunicorn and go-systemd check. A line with shell control operators runs as it is.
    """
    if _has_control_operators(command):
        return ("/bin/sh", "-c", command)
    return ("/bin/sh", "-c", f"exec {command.strip()}")


def _missing_script(app: RawApp, script: str, cwd: str) -> ConfigError:
    return app.error("script", f"expected a file under {cwd} or a command on PATH, got {script!r}")


def resolve_command(
    app: RawApp, script: str, cwd: str, path: str
) -> tuple[str, str | None, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(script path, interpreter, argv, interpreter args, args) by DESIGN's inference rules."""
    explicit = app.get("interpreter", parse_text, None)
    iargs = app.get("interpreter_args", parse_words, ())
    args = app.get("args", parse_words, ())
    candidate = os.path.normpath(os.path.join(cwd, os.path.expanduser(script)))
    target = candidate if os.path.isfile(candidate) else _which(script, path)
    if explicit is not None and explicit.strip().lower() != "none":
        if target is None:
            raise _missing_script(app, script, cwd)
        interp = _find_interpreter(app, explicit.strip(), path, script, cwd)
        return target, interp, (interp, *iargs, target, *args), iargs, args
    if target is None and explicit is None and any(c.isspace() for c in script.strip()):
        _no_interpreter_args(app, iargs, "a shell command line")
        import shlex

        command = f"{script} {shlex.join(args)}" if args else script
        return script, None, shell_argv(command), (), args
    if target is None:
        raise _missing_script(app, script, cwd)
    name = INTERPRETERS.get(os.path.splitext(target)[1].lower()) if explicit is None else None
    if name is not None and target == candidate:
        interp = _find_interpreter(app, name, path, script, cwd)
        return target, interp, (interp, *iargs, target, *args), iargs, args
    _no_interpreter_args(app, iargs, "interpreter 'none'" if explicit else "a script run as itself")
    if not os.access(target, os.X_OK):
        message = f"{target} is not executable and its extension names no interpreter"
        raise app.error("script", message + " (set interpreter)")
    return target, None, (target, *args), (), args


def _resolve_cwd(app: RawApp, base_dir: str) -> str:
    given = app.get("cwd", parse_text, None)
    if given is None:
        return base_dir
    cwd = os.path.normpath(os.path.join(base_dir, os.path.expanduser(given)))
    if not os.path.isdir(cwd):
        raise app.error("cwd", f"expected an existing directory, got {given!r}")
    return cwd


def _read_env_file(app: RawApp, base_dir: str) -> tuple[str | None, dict[str, str]]:
    given = app.get("env_file", parse_text, None)
    if given is None:  # like honcho and foreman: a .env next to the ecosystem file
        given = DEFAULT_ENV_FILE
        if not os.path.isfile(os.path.join(base_dir, given)):
            return None, {}
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(given)))
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise app.error("env_file", f"cannot read {given!r}: {reason}") from None
    try:
        return path, parse_dotenv(text)
    except BadValue as exc:
        raise app.error("env_file", f"{given!r}: {exc}") from None


def resolve_app(
    app: RawApp, *, base_dir: str, environ: Mapping[str, str], cpus: int, shell: bool = False
) -> Resolved:
    """Everything about one app that needs the file system, PATH or the machine."""
    cwd = _resolve_cwd(app, base_dir)
    env_file, env_file_env = _read_env_file(app, base_dir)
    script = str(app.values["script"])
    argv: tuple[str, ...]
    iargs: tuple[str, ...]
    args: tuple[str, ...]
    if shell:
        script_path, interp, argv, iargs, args = script, None, shell_argv(script), (), ()
    else:
        path = environ.get("PATH", os.defpath)
        script_path, interp, argv, iargs, args = resolve_command(app, script, cwd, path)
    return Resolved(
        script=script_path,
        argv=argv,
        cwd=cwd,
        interpreter=interp,
        interpreter_args=iargs,
        args=args,
        env_file=env_file,
        env_file_env=env_file_env,
        cpus=cpus,
        default_port=environ.get("PORT") or DEFAULT_PORT,
    )


# --- putting it together ------------------------------------------------------------


def _select(apps: list[RawApp], only: Sequence[str] | None, label: str) -> list[RawApp]:
    seen: dict[str, RawApp] = {}
    for app in apps:
        if app.name in seen:
            first = seen[app.name].index
            also = f" (also apps[{first}])" if first is not None else ""
            raise app.error("name", f"duplicate app name {app.name!r}{also}")
        seen[app.name] = app
    if only is None:
        return apps
    wanted = {n.strip() for item in only for n in item.split(",") if n.strip()}
    if not wanted:
        raise ConfigError(label, "expected app names, got nothing", key="--only")
    unknown = sorted(wanted - seen.keys())
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise ConfigError(label, f"no app named {names} (apps: {', '.join(seen)})", key="--only")
    return [app for app in apps if app.name in wanted]


def _counts_cpus(instances: object) -> bool:
    """Whether an `instances` value needs the CPU count (`max`, 0, -1): reading the cgroup
    files costs start-up time, and most apps give a plain number."""
    if isinstance(instances, str):
        return not instances.strip().isdigit() or int(instances) == 0
    return isinstance(instances, int) and not isinstance(instances, bool) and instances <= 0


def _build(
    label: str,
    raw_apps: list[object],
    *,
    base_dir: str,
    env_name: str | None,
    only: Sequence[str] | None,
    environ: Mapping[str, str],
    warnings: list[str],
    index: Callable[[int], int | None] = lambda i: i,
    shell: bool = False,
) -> Ecosystem:
    apps = [normalize_app(raw, file=label, index=index(i)) for i, raw in enumerate(raw_apps)]
    for app in apps:
        warnings.extend(app.warnings)
    selected = _select(apps, only, label)
    cpus = cpu_count() if any(_counts_cpus(app.values.get("instances")) for app in selected) else 1
    specs = []
    if env_name is not None and not any(env_name in app.envs for app in selected):
        warnings.append(f"{label}: --env {env_name}: no app has env_{env_name}; using env alone")
    for app in selected:
        facts = resolve_app(app, base_dir=base_dir, environ=environ, cpus=cpus, shell=shell)
        specs.append(build_app_spec(app, facts, env_name=env_name))
    return Ecosystem(label, tuple(specs), tuple(warnings))


def load_ecosystem(
    path: str,
    *,
    env_name: str | None = None,
    only: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Ecosystem:
    """Read, expand, validate and resolve every app of an ecosystem file, or raise ConfigError."""
    environ = os.environ if environ is None else environ
    kind = file_kind(path)
    text = _read_text(path)
    warnings: list[str] = []
    if kind == "procfile":
        raw_apps = _parse_procfile(text, path, environ)
    else:
        parsers = {"yaml": _parse_yaml, "json": _parse_json, "toml": _parse_toml}
        doc = _parse_js(path, path, environ) if kind == "js" else parsers[kind](text, path)
        missing: set[str] = set()
        try:
            doc = expand_vars(doc, environ, missing)
        except BadValue as exc:
            raise ConfigError(path, str(exc)) from None
        warnings += [f"{path}: ${{{name}}} is not set; using ''" for name in sorted(missing)]
        raw_apps = _app_list(doc, path, warnings)
    base_dir = os.path.dirname(os.path.abspath(path))
    return _build(
        path,
        raw_apps,
        base_dir=base_dir,
        env_name=env_name,
        only=only,
        environ=environ,
        warnings=warnings,
        shell=kind == "procfile",
    )


def direct_app(
    script: str,
    *,
    name: str | None = None,
    instances: str | int | None = None,
    exec_mode: str | None = None,
    env_vars: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    interpreter: str | None = None,
    watch: bool = False,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Ecosystem:
    """One app from the command line (`python -m runtime app.py -i 4 --name web`)."""
    raw: dict[str, object] = {"script": script, "args": list(args), "watch": watch}
    optional = {
        "name": name,
        "instances": instances,
        "exec_mode": exec_mode,
        "interpreter": interpreter,
        "env": dict(env_vars) if env_vars else None,
    }
    raw.update({k: v for k, v in optional.items() if v is not None})
    return _build(
        COMMAND_LINE,
        [raw],
        base_dir=os.path.abspath(cwd or os.getcwd()),
        env_name=None,
        only=None,
        environ=os.environ if environ is None else environ,
        warnings=[],
        index=lambda _: None,
    )


# --- `python -m runtime check` -----------------------------------------------------


def _show(key: str, value: object) -> str:
    if value is None or value in ((), frozenset()):
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in ("argv", "args", "interpreter_args") and isinstance(value, tuple):
        import shlex

        return shlex.join(value)
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, frozenset):
        return ", ".join(str(v) for v in sorted(value))
    return str(value)


def format_check(eco: Ecosystem) -> str:
    """Every resolved app with every setting, secrets masked: the output of `check`."""
    count = len(eco.apps)
    lines = [f"{eco.file}: {count} app{'s' if count != 1 else ''}"]
    for spec in eco.apps:
        lines.append(f"\n{spec.name}")
        for name in fields(AppSpec):
            if name in ("name", "env"):
                continue
            lines.append(f"  {name}: {_show(name, getattr(spec, name))}")
        env = mask_env(spec.env)
        lines.append("  env:" + ("" if env else " -"))
        lines += [f"    {k}={v}" for k, v in sorted(env.items())]
    return "\n".join(lines)
