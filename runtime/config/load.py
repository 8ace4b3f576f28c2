"""Read an ecosystem file into validated `AppSpec`s: the whole of `config`, put together (edge).

Reading the file (`files`), `${VAR}` expansion (`expand`), each app's keys (`spec`, with
the table in `keys`), its command line (`command`), its `.env` (`dotenv`) and the CPU
count (`cpus`). Everything that needs the file system, PATH or the machine is here or
in those edges; what a value means is decided by the pure `spec` and `values`.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import pwd
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from runtime.config.command import resolve_command, runs_node, shell_argv
from runtime.config.cpus import cpu_count
from runtime.config.dotenv import parse_dotenv
from runtime.config.expand import expand_vars
from runtime.config.files import (
    file_kind,
    parse_js,
    parse_json,
    parse_procfile,
    parse_toml,
    read_bounded,
    read_text,
)
from runtime.config.keys import DEFAULT_PORT, SIGINT, SIGTERM
from runtime.config.spec import AppSpec, RawApp, Resolved, RunAs, build_app_spec, normalize_app
from runtime.config.values import (
    MAX_ARG_BYTES,
    BadValue,
    arg_bytes,
    parse_signal,
    parse_text,
    parse_user,
    wants_cpu_count,
)
from runtime.errors import ConfigError

COMMAND_LINE = "<command line>"
DEFAULT_ENV_FILE = ".env"
MAX_ENV_FILE_BYTES = 1 << 20
PM2_KILL_SIGNAL_VAR = "PM2_KILL_SIGNAL"


@dataclass(frozen=True, slots=True)
class Ecosystem:
    """Every selected app of one ecosystem file, validated, plus the warnings to show."""

    file: str
    apps: tuple[AppSpec, ...]
    warnings: tuple[str, ...]


def read_document(
    kind: str, path: str, environ: Mapping[str, str]
) -> tuple[object, dict[str, str]]:
    """The data of a YAML, JSON, TOML or JS file (each parser imported only when used), and
    for a JS file what it set in `process.env` (pm2 hands that to every app)."""
    if kind == "js":
        return parse_js(path, path, environ)
    text = read_text(path, path)
    if kind == "yaml":
        from runtime.config.yamlfile import parse_yaml

        return parse_yaml(text, path), {}
    return (parse_toml(text, path) if kind == "toml" else parse_json(text, path)), {}


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


def _resolve_cwd(app: RawApp, base_dir: str) -> str:
    given = app.get("cwd", parse_text, None)
    if given is None:
        return base_dir
    cwd = os.path.normpath(os.path.join(base_dir, os.path.expanduser(given)))
    if not os.path.isdir(cwd):
        raise app.error("cwd", f"expected an existing directory, got {given!r}")
    return cwd


def _read_env_file(
    app: RawApp, base_dir: str, warnings: list[str]
) -> tuple[str | None, dict[str, str]]:
    """`env_file`, which must parse; or, like honcho and foreman, a `.env` next to the
    ecosystem file, which pm2 never reads: a broken one is a warning, never an error."""
    given = app.get("env_file", parse_text, None)
    implicit = given is None
    if given is None:
        given = DEFAULT_ENV_FILE
        if not os.path.isfile(os.path.join(base_dir, given)):
            return None, {}
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(given)))
    try:
        return path, parse_dotenv(read_bounded(path, MAX_ENV_FILE_BYTES))
    except (OSError, ValueError) as exc:  # BadValue, UnicodeDecodeError and TooLarge too
        reason = getattr(exc, "strerror", None) or str(exc)
        if implicit:
            warnings.append(f"{app.where}: {path} is not read ({reason})")
            return None, {}
        prefix = "cannot read " if not isinstance(exc, BadValue) else ""
        raise app.error("env_file", f"{prefix}{given!r}: {reason}") from None


def resolve_app(
    app: RawApp,
    *,
    base_dir: str,
    environ: Mapping[str, str],
    cpus: int,
    warnings: list[str],
    shell: bool = False,
) -> Resolved:
    """Everything about one app that needs the file system, PATH or the machine."""
    cwd = _resolve_cwd(app, base_dir)
    env_file, env_file_env = _read_env_file(app, base_dir, warnings)
    script = str(app.values["script"])
    argv: tuple[str, ...]
    iargs: tuple[str, ...]
    args: tuple[str, ...]
    if shell:
        script_path, interp, argv, iargs, args = script, None, shell_argv(script), (), ()
    else:
        path = environ.get("PATH", os.defpath)
        script_path, interp, argv, iargs, args = resolve_command(app, script, cwd, path, warnings)
    _refuse_long_arguments(app, argv, args)
    node = runs_node(argv)
    return Resolved(
        run_as=_run_as(app),
        script=script_path,
        argv=argv,
        cwd=cwd,
        interpreter=interp,
        interpreter_args=iargs,
        args=args,
        env_file=env_file,
        env_file_env=env_file_env,
        cpus=cpus,
        default_port=environ.get("PORT") or str(DEFAULT_PORT),
        node=node,
        kill_signal=_default_kill_signal(node, environ),
    )


def _refuse_long_arguments(app: RawApp, argv: tuple[str, ...], args: tuple[str, ...]) -> None:
    """A word longer than exec takes (a megabyte command line) is an error now, not an
    exit 127 loop later."""
    for word in argv:
        if arg_bytes(word) > MAX_ARG_BYTES:
            raise app.error(
                "args" if word in args else "script",
                f"expected at most {MAX_ARG_BYTES} bytes per argument (what exec takes), "
                f"got {arg_bytes(word)}",
            )


def _run_as(app: RawApp) -> RunAs | None:
    """`uid` (or `user`) and `gid`, looked up; only a master running as root may use them."""
    user = app.get("uid", parse_user, None)
    group = app.get("gid", parse_user, None)
    if user is None and group is None:
        return None
    key = "uid" if user is not None else "gid"
    if os.geteuid() != 0:
        why = f"the runtime runs as uid {os.geteuid()}; running an app as another user needs root"
        raise app.error(key, why)
    try:
        entry = pwd.getpwnam(user) if user and not user.isdigit() else pwd.getpwuid(int(user or 0))
        who = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)
    except KeyError:
        if user is None or not user.isdigit():
            raise app.error("uid", f"no such user {user!r}") from None
        who = RunAs(user, int(user), int(user), "/")  # a bare uid, as containers often have
    if group is None:
        return who
    try:
        gid = grp.getgrnam(group).gr_gid if not group.isdigit() else int(group)
    except KeyError:
        raise app.error("gid", f"no such group {group!r}") from None
    return dataclasses.replace(who, gid=gid)


def _default_kill_signal(node: bool, environ: Mapping[str, str]) -> int:
    """pm2's stop signal for node apps (SIGINT, or `$PM2_KILL_SIGNAL`); SIGTERM for the rest."""
    if not node:
        return SIGTERM
    given = environ.get(PM2_KILL_SIGNAL_VAR)
    if not given:
        return SIGINT
    try:
        return parse_signal(given)
    except BadValue as exc:
        raise ConfigError(f"${PM2_KILL_SIGNAL_VAR}", str(exc)) from None


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
    file_env: Mapping[str, str] | None = None,
) -> Ecosystem:
    apps = [normalize_app(raw, file=label, index=index(i)) for i, raw in enumerate(raw_apps)]
    for app in apps:
        warnings.extend(app.warnings)
    selected = _select(apps, only, label)
    wanted = any(wants_cpu_count(app.values.get("instances")) for app in selected)
    cpus = cpu_count() if wanted else 1  # the cgroup files are read only when needed
    specs = []
    if env_name is not None and not any(env_name in app.envs for app in selected):
        warnings.append(f"{label}: --env {env_name}: no app has env_{env_name}; using env alone")
    for app in selected:
        facts = resolve_app(
            app, base_dir=base_dir, environ=environ, cpus=cpus, warnings=warnings, shell=shell
        )
        facts = dataclasses.replace(facts, file_env=dict(file_env or {}))
        specs.append(build_app_spec(app, facts, env_name=env_name, warnings=warnings))
    return Ecosystem(label, _one_default_listener(selected, specs, warnings), tuple(warnings))


def _one_default_listener(
    apps: Sequence[RawApp], specs: Sequence[AppSpec], warnings: list[str]
) -> tuple[AppSpec, ...]:
    """Cluster apps without `listen` default to `:$PORT`; only the first keeps an address
    another app already has (pm2 binds on demand, so its background workers in cluster
    mode take no port; here a later app on the same default would split the traffic)."""
    taken: dict[str, str] = {}
    out: list[AppSpec] = []
    for app, spec in zip(apps, specs, strict=True):
        clash = next((a for a in spec.listen if a in taken), None)
        if clash is not None and app.values.get("listen") is None:
            owner = taken[clash]
            warnings.append(
                f"{app.where}: listen: the default {clash!r} is {owner}'s; {spec.name} gets no "
                "pre-bound socket (give it its own listen, or exec_mode: fork)"
            )
            spec = dataclasses.replace(spec, listen=())
        taken.update(dict.fromkeys(spec.listen, spec.name))
        out.append(spec)
    return tuple(out)


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
    warnings: list[str] = []
    file_env: dict[str, str] = {}
    if kind == "procfile":
        raw_apps = parse_procfile(read_text(path, path), path, environ)
    else:
        doc, file_env = read_document(kind, path, environ)
        environ = {**environ, **file_env}
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
        file_env=file_env,
    )


def direct_app(
    script: str,
    keys: Mapping[str, object] | None = None,
    *,
    args: Sequence[str] = (),
    env_vars: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Ecosystem:
    """One app from the command line (`python -m runtime app.py -i 4 --name web`): `keys`
    are ecosystem keys by name, as the options of the direct form give them."""
    raw: dict[str, object] = {"script": script, "args": list(args), **(keys or {})}
    if env_vars:
        raw["env"] = dict(env_vars)
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
