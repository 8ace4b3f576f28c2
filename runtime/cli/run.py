"""The run command: `python -m runtime FILE|SCRIPT [options]`, the foreground master itself.

Its options are pm2-runtime's (and, in the direct form, one per ecosystem key, from
`runtime.config.keys`), plus the runtime's own. The master binds its sockets and forks
its workers before it imports its event loop (`runtime.boot`): that is the start-up path,
and this module keeps asyncio, uvloop, structlog and the supervisor off it until the
workers are forked.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from runtime import __version__
from runtime.argv import Parser
from runtime.config.keys import BY_NAME, KEYS
from runtime.config.load import Ecosystem, direct_app, load_ecosystem
from runtime.config.spec import SocketSharing
from runtime.errors import UsageError

MAX_SHUTDOWN_DELAY_S = 3600.0
ECOSYSTEM_SUFFIXES = (
    ".yml", ".yaml", ".json", ".toml", ".config.js", ".config.cjs", ".cjs", ".config.mjs"
)  # fmt: skip
LOG_FORMATS = ("json", "pretty", "pm2", "raw", "logfmt")
WEB_TOKEN_VAR = "RUNTIME_WEB_TOKEN"
SHUTDOWN_DELAY_VAR = "RUNTIME_SHUTDOWN_DELAY"  # set once in an image, for every command line
LOOP_VAR = "RUNTIME_LOOP"
LOOPS = ("uvloop", "asyncio")
DEFAULT_WEB_PORT = "9615"  # pm2-runtime's --web default
# pm2-runtime's output flags, as --log-format values
LOG_FLAGS = (("--json", "pm2"), ("--raw", "raw"), ("--format", "logfmt"), ("--formatted", "pretty"))
NO_EFFECT_FLAGS = ("--error", "--output")  # pm2-runtime's log files: logs go to stdout here
REFUSED_FLAGS = ("--secret", "--public", "--machine-name", "--trace", "--v8", "--deep-monitoring")
REFUSED_WHY = "pm2.io monitoring is not part of this runtime (see --web: /metrics, /status)"
KEY_DEST = "key:"  # namespace entries of the direct form's options: one per ecosystem key
METAVARS = {"ms": "DURATION", "bytes": "SIZE"}

EXAMPLES = """\
examples:
  python -m runtime ecosystem.config.yml             run every app of an ecosystem file
  python -m runtime start ecosystem.config.yml       the same, in pm2-runtime's words
  python -m runtime ecosystem.config.yml --env prod  merge env_prod over env
  python -m runtime ecosystem.config.yml --only web  start a subset of the apps
  python -m runtime Procfile                         each `type: command` line is an app
  python -m runtime app.py -i 4 --name web           the direct form, like pm2-runtime start
  python -m runtime server.js -i max --max-memory-restart 300M --env-var NODE_ENV=production
  python -m runtime check ecosystem.config.yml       validate and print the resolved apps

signals: TERM/INT graceful stop (a second one kills), QUIT kill now, HUP re-read the
file and reload with zero downtime, USR1 status snapshot, TTIN/TTOU one more/fewer
instance of each cluster app.
exit codes: 0 stopped on request or every app ended cleanly, 1 every app ended and one
failed, 2 usage error, 78 configuration error."""


@dataclass(slots=True)
class RunArgs:
    """The run command's arguments, as argparse read them."""

    target: str
    args: list[str] = field(default_factory=list)
    env_name: str | None = None
    only: str | None = None
    log_format: str | None = None
    no_auto_exit: bool = False
    control: str | None = None
    socket_sharing: str | None = None
    web: str | None = None
    web_token: str | None = None
    web_insecure: bool = False
    shutdown_delay: float = 0.0
    delay: float = 0.0
    env_var: list[str] = field(default_factory=list)
    keys: dict[str, object] = field(default_factory=dict)  # the direct form's, by key name
    ignored: list[str] = field(default_factory=list)  # flags that have no effect here


class _Refuse(argparse.Action):
    """A pm2-runtime flag that does not apply here: one line saying why, exit 2."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        raise UsageError(f"{self.option_strings[0]}: {REFUSED_WHY}")


class _NoEffect(argparse.Action):
    """A pm2-runtime flag accepted for drop-in use, with a warning that it does nothing."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        namespace.ignored.append(f"{self.option_strings[0]} has no effect here: logs go to stdout")


def _add_key_options(group: argparse._ArgumentGroup) -> None:
    """The direct form's app options: one per ecosystem key that has flags (config.keys)."""
    for key in KEYS:
        if not key.flags:
            continue
        kwargs: dict[str, Any] = {"dest": KEY_DEST + key.name, "default": argparse.SUPPRESS}
        if key.flag_value is not None:
            kwargs.update(action="store_const", const=key.flag_value)
        elif key.name == "stop_exit_codes":
            kwargs.update(nargs="+", metavar="CODE")
        else:
            kwargs["metavar"] = METAVARS.get(key.unit) or key.name.upper()
        group.add_argument(*key.flags, help=key.doc.replace("%", "%%"), **kwargs)


def _add_pm2_runtime_flags(parser: argparse.ArgumentParser) -> None:
    for flag, fmt in LOG_FLAGS:
        parser.add_argument(
            flag, dest="log_format", action="store_const", const=fmt, help=f"--log-format {fmt}"
        )
    parser.add_argument(
        "--delay", type=float, default=0.0, metavar="SECONDS", help="wait before starting"
    )
    for flag in NO_EFFECT_FLAGS:
        parser.add_argument(
            flag, action=_NoEffect, metavar="PATH", default=argparse.SUPPRESS, help="no effect here"
        )
    for flag in REFUSED_FLAGS:
        parser.add_argument(
            flag, action=_Refuse, nargs="?", default=argparse.SUPPRESS, help=argparse.SUPPRESS
        )


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The run command's parser; its `--help` is pinned by docs/cli-help.txt."""
    env = os.environ if environ is None else environ
    parser = Parser(
        prog="runtime",
        description="A foreground process runtime for containers (the Python pm2-runtime).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("-V", "--version", action="version", version=f"runtime {__version__}")
    add("target", help="ecosystem file (YAML, JSON, TOML, JS, Procfile) or script")
    add("args", nargs="*", help="script arguments (direct form; after --)")
    add("--env", dest="env_name", metavar="NAME", help="merge env_NAME over env")
    add("--only", metavar="A,B", help="start only these apps")
    add("--log-format", choices=LOG_FORMATS, help="default: pretty on a TTY, else json")
    add("--no-auto-exit", action="store_true", help="keep running when every app has ended")
    add(
        "--control",
        metavar="PATH",
        help="control socket (default: one per ecosystem, under $XDG_RUNTIME_DIR, /run for "
        "root, or /tmp)",
    )
    add(
        "--socket-sharing",
        choices=("shared", "reuseport"),
        help="override every app's socket_sharing (default per app: reuseport)",
    )
    add(
        "--web",
        metavar="[HOST:]PORT",
        nargs="?",
        const=DEFAULT_WEB_PORT,
        help="serve /health, /status, /metrics and a dashboard (host 127.0.0.1 unless "
        f"given, port {DEFAULT_WEB_PORT} when none is)",
    )
    add(
        "--web-token",
        metavar="TOKEN",
        default=env.get(WEB_TOKEN_VAR),
        help=f"bearer token for everything but /health (default: ${WEB_TOKEN_VAR}); "
        "required when --web binds beyond loopback",
    )
    add(
        "--web-insecure",
        action="store_true",
        help="serve --web beyond loopback without a token (anyone who reaches the port can "
        "read /status and the logs)",
    )
    add(
        "--shutdown-delay",
        type=float,
        default=_env_seconds(env, SHUTDOWN_DELAY_VAR),
        metavar="SECONDS",
        help="on SIGTERM, keep serving this long while /health answers 503 (default: "
        f"${SHUTDOWN_DELAY_VAR}, else 0)",
    )
    _add_pm2_runtime_flags(parser)
    direct = parser.add_argument_group("direct form (a script instead of an ecosystem file)")
    direct.add_argument(
        "--env-var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the app (repeatable)",
    )
    _add_key_options(direct)
    return parser


def _env_seconds(env: Mapping[str, str], name: str) -> float:
    """A number of seconds from the environment (0 when unset), refused in one line."""
    text = env.get(name, "").strip()
    try:
        return float(text) if text else 0.0
    except ValueError:
        raise UsageError(f"${name} expects a number of seconds, got {text!r}") from None


def parse_run_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> RunArgs:
    """The run command's arguments (argparse raises UsageError or exits for --help)."""
    ns = build_parser(environ).parse_intermixed_args(argv, argparse.Namespace(ignored=[]))
    values = vars(ns)
    keys = {k.removeprefix(KEY_DEST): values.pop(k) for k in list(values) if k.startswith(KEY_DEST)}
    return RunArgs(**values, keys=keys)


def is_ecosystem(target: str) -> bool:
    """Whether `target` names an ecosystem file (by name) rather than a script."""
    base = os.path.basename(target)
    return base.endswith(ECOSYSTEM_SUFFIXES) or base == "Procfile" or base.endswith(".procfile")


def _env_vars(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--env-var expects KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def _only(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UsageError(f"--only expects app names, got {text!r}")
    return names


@dataclass(frozen=True, slots=True)
class Source:
    """Where the apps come from: read now, on SIGHUP, and with another env context or
    environment (`restart NAME --env X`, `--update-env`)."""

    ns: RunArgs

    def __call__(
        self, env_name: str | None = None, environ: Mapping[str, str] | None = None
    ) -> Ecosystem:
        ns = self.ns
        if is_ecosystem(ns.target):
            eco = load_ecosystem(
                ns.target, env_name=env_name or ns.env_name, only=_only(ns.only), environ=environ
            )
        else:
            eco = direct_app(
                ns.target, ns.keys, args=ns.args, env_vars=_env_vars(ns.env_var), environ=environ
            )
        if ns.socket_sharing:
            mode: SocketSharing = "shared" if ns.socket_sharing == "shared" else "reuseport"
            apps = tuple(dataclasses.replace(app, socket_sharing=mode) for app in eco.apps)
            eco = dataclasses.replace(eco, apps=apps)
        return eco


def loader(ns: RunArgs) -> Source:
    """What reads the apps, now and again on SIGHUP; refuses what does not fit the target."""
    _only(ns.only)
    if is_ecosystem(ns.target):
        if ns.args:
            raise UsageError(f"unexpected arguments after an ecosystem file: {' '.join(ns.args)}")
        given = [BY_NAME[name].flags[-1] for name in ns.keys] + (["--env-var"] * bool(ns.env_var))
        if given:
            raise UsageError(f"{given[0]} applies to a script (the direct form), not to a file")
    return Source(ns)


def control_key(ns: RunArgs) -> str:
    """What names the control socket: the ecosystem file, or the script and app name."""
    if is_ecosystem(ns.target):
        return ns.target
    name = ns.keys.get("name")
    return f"{ns.target}.{name}" if name else ns.target


def event_loop_choice(environ: Mapping[str, str]) -> str:
    """`RUNTIME_LOOP`: uvloop (the default) or the standard `asyncio` loop."""
    name = environ.get(LOOP_VAR, "") or "uvloop"
    if name not in LOOPS:
        raise UsageError(f"{LOOP_VAR} must be one of {', '.join(LOOPS)}, got {name!r}")
    return name


def check_web_exposure(ns: RunArgs) -> None:
    """`--web` beyond loopback serves the logs and the process list to the network: only
    with a token, or when `--web-insecure` says it is meant."""
    if ns.web is None:
        return
    from runtime.observe.webspec import is_loopback, parse_web_spec

    host, _port = parse_web_spec(ns.web)
    if not ns.web_token and not ns.web_insecure and not is_loopback(host):
        raise UsageError(
            f"--web {ns.web} is reachable beyond this host: set --web-token or "
            f"${WEB_TOKEN_VAR}, or pass --web-insecure to serve it without a token"
        )


def cmd_run(argv: Sequence[str]) -> int:
    """Parse, validate everything in the parent, then run the master in the foreground."""
    ns = parse_run_args(argv)
    if not 0.0 <= ns.shutdown_delay <= MAX_SHUTDOWN_DELAY_S:  # also refuses nan and inf
        raise UsageError(f"--shutdown-delay expects 0 to 3600 seconds, got {ns.shutdown_delay}")
    if not 0.0 <= ns.delay <= MAX_SHUTDOWN_DELAY_S:
        raise UsageError(f"--delay expects 0 to 3600 seconds, got {ns.delay}")
    check_web_exposure(ns)  # a bad or unguarded --web is refused before anything starts
    loop_name = event_loop_choice(os.environ)
    load = loader(ns)
    eco = load()  # validated in the parent, before anything starts
    eco = dataclasses.replace(eco, warnings=(*ns.ignored, *eco.warnings))
    if ns.delay:
        time.sleep(ns.delay)  # pm2-runtime's --delay: nothing is bound or started yet
    return run_master(eco, load, ns, loop_name)


def run_master(eco: Ecosystem, load: Source, ns: RunArgs, loop_name: str) -> int:
    """Bind and fork (runtime.boot), import the loop while the relay forwards, then serve."""
    from runtime.boot.early import start_early
    from runtime.boot.relay import relay_while
    from runtime.control.protocol import default_socket_path
    from runtime.logs.formats import LogFormat, default_format, prefix_width

    control_path = ns.control or default_socket_path(control_key(ns))
    early = start_early(eco, control_path)
    try:
        fmt = LogFormat(ns.log_format) if ns.log_format else default_format(1)
        # The event loop's modules load here while a helper thread forwards the
        # workers' first lines (runtime.boot.relay).
        relay_while(partial(_import_loop_modules, loop_name), early, eco, fmt)
        import asyncio

        from runtime.logs import events
        from runtime.logs.sink import LogSink
        from runtime.supervise.supervisor import Options, Supervisor
    except BaseException:
        early.close()
        raise

    async def serve() -> int:
        widest = prefix_width((spec.name, spec.most_instances) for spec in eco.apps)
        sink = LogSink(1, fmt, asyncio.get_running_loop(), prefix_cells=widest)
        sink.writelines(early.unwritten)  # what the start-up relay could not write yet
        early.unwritten = []
        events.configure(sink)
        log = events.logger()
        for warning in eco.warnings:
            log.warning("config_warning", message=warning)
        options = Options(
            auto_exit=not ns.no_auto_exit,
            reload_config=load,
            control_path=control_path,
            web=ns.web,
            web_token=ns.web_token,
            shutdown_delay_s=ns.shutdown_delay,
        )
        try:
            return await Supervisor(eco, sink, options, early).run()
        finally:
            await sink.aclose()

    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(serve())
    return asyncio.run(serve())


def _import_loop_modules(loop_name: str) -> None:
    import asyncio  # noqa: F401

    if loop_name == "uvloop":
        import uvloop  # noqa: F401

    import structlog  # noqa: F401

    import runtime.logs.events
    import runtime.supervise.supervisor  # noqa: F401
