"""The run command: `python -m runtime FILE|SCRIPT [options]`, the foreground master itself.

The master binds its sockets and forks its workers before it imports its event loop
(`runtime.boot`): that is the start-up path, and this module keeps asyncio, uvloop,
structlog and the supervisor off it until the workers are forked.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from runtime import __version__
from runtime.argv import Parser
from runtime.config.load import Ecosystem, direct_app, load_ecosystem
from runtime.config.spec import SocketSharing
from runtime.errors import UsageError

MAX_SHUTDOWN_DELAY_S = 3600.0
ECOSYSTEM_SUFFIXES = (
    ".yml", ".yaml", ".json", ".toml", ".config.js", ".config.cjs", ".cjs", ".config.mjs"
)  # fmt: skip
LOG_FORMATS = ("json", "pretty", "pm2", "raw")
WEB_TOKEN_VAR = "RUNTIME_WEB_TOKEN"
LOOP_VAR = "RUNTIME_LOOP"
LOOPS = ("uvloop", "asyncio")

EXAMPLES = """\
examples:
  python -m runtime ecosystem.config.yml             run every app of an ecosystem file
  python -m runtime ecosystem.config.yml --env prod  merge env_prod over env
  python -m runtime ecosystem.config.yml --only web  start a subset of the apps
  python -m runtime Procfile                         each `type: command` line is an app
  python -m runtime app.py -i 4 --name web           the direct form, like pm2-runtime start
  python -m runtime server.js -i max --env-var NODE_ENV=production
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
    shutdown_delay: float = 0.0
    instances: str | None = None
    name: str | None = None
    env_var: list[str] = field(default_factory=list)
    interpreter: str | None = None
    exec_mode: str | None = None
    watch: bool = False


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
    add("--version", action="version", version=f"runtime {__version__}")
    add("target", help="ecosystem file (YAML, JSON, TOML, JS, Procfile) or script")
    add("args", nargs="*", help="script arguments (direct form; after --)")
    add("--env", dest="env_name", metavar="NAME", help="merge env_NAME over env")
    add("--only", metavar="A,B", help="start only these apps")
    add("--log-format", choices=LOG_FORMATS, help="default: pretty on a TTY, else json")
    add("--no-auto-exit", action="store_true", help="keep running when every app has ended")
    add(
        "--control",
        metavar="PATH",
        help="control socket (default: one per ecosystem, under $XDG_RUNTIME_DIR or /tmp)",
    )
    add(
        "--socket-sharing",
        choices=("shared", "reuseport"),
        help="override every app's socket_sharing (default per app: reuseport)",
    )
    add(
        "--web",
        metavar="[HOST:]PORT",
        help="serve /health, /status, /metrics and a dashboard (host 127.0.0.1 by default)",
    )
    add(
        "--web-token",
        metavar="TOKEN",
        default=env.get(WEB_TOKEN_VAR),
        help=f"bearer token for everything but /health (default: ${WEB_TOKEN_VAR})",
    )
    add(
        "--shutdown-delay",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="on SIGTERM, keep serving this long while /health answers 503 (default 0)",
    )
    direct = parser.add_argument_group("direct form (a script instead of an ecosystem file)")
    direct.add_argument("-i", "--instances", metavar="N", help="N, max, or -1")
    direct.add_argument("--name", help="app name (default: the script's basename)")
    direct.add_argument(
        "--env-var",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for the app (repeatable)",
    )
    direct.add_argument("--interpreter", help="run the script with this program")
    direct.add_argument("-x", "--exec-mode", choices=("fork", "cluster"))
    direct.add_argument("--watch", action="store_true", help="restart on file changes in cwd")
    return parser


def parse_run_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> RunArgs:
    """The run command's arguments (argparse raises UsageError or exits for --help)."""
    ns = build_parser(environ).parse_intermixed_args(argv)
    return RunArgs(**vars(ns))


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


def loader(ns: RunArgs) -> Callable[[], Ecosystem]:
    """What reads the apps, now and again on SIGHUP."""
    only = [name for name in ns.only.split(",") if name] if ns.only else None
    load: Callable[[], Ecosystem]
    if is_ecosystem(ns.target):
        if ns.args:
            raise UsageError(f"unexpected arguments after an ecosystem file: {' '.join(ns.args)}")
        load = partial(load_ecosystem, ns.target, env_name=ns.env_name, only=only)
    else:
        load = partial(
            direct_app,
            ns.target,
            name=ns.name,
            instances=ns.instances,
            exec_mode=ns.exec_mode,
            env_vars=_env_vars(ns.env_var),
            args=list(ns.args),
            interpreter=ns.interpreter,
            watch=ns.watch,
        )
    if ns.socket_sharing:
        mode: SocketSharing = "shared" if ns.socket_sharing == "shared" else "reuseport"
        return partial(_with_sharing, load, mode)
    return load


def _with_sharing(load: Callable[[], Ecosystem], mode: SocketSharing) -> Ecosystem:
    """The ecosystem with `--socket-sharing` applied to every app."""
    eco = load()
    apps = tuple(dataclasses.replace(app, socket_sharing=mode) for app in eco.apps)
    return dataclasses.replace(eco, apps=apps)


def control_key(ns: RunArgs) -> str:
    """What names the control socket: the ecosystem file, or the script and app name."""
    if is_ecosystem(ns.target):
        return ns.target
    return f"{ns.target}.{ns.name}" if ns.name else ns.target


def event_loop_choice(environ: Mapping[str, str]) -> str:
    """`RUNTIME_LOOP`: uvloop (the default) or the standard `asyncio` loop."""
    name = environ.get(LOOP_VAR, "") or "uvloop"
    if name not in LOOPS:
        raise UsageError(f"{LOOP_VAR} must be one of {', '.join(LOOPS)}, got {name!r}")
    return name


def cmd_run(argv: Sequence[str]) -> int:
    """Parse, validate everything in the parent, then run the master in the foreground."""
    ns = parse_run_args(argv)
    if not 0.0 <= ns.shutdown_delay <= MAX_SHUTDOWN_DELAY_S:  # also refuses nan and inf
        raise UsageError(f"--shutdown-delay expects 0 to 3600 seconds, got {ns.shutdown_delay}")
    if ns.web is not None:
        from runtime.observe.webspec import parse_web_spec

        parse_web_spec(ns.web)  # a bad --web is refused before anything starts
    loop_name = event_loop_choice(os.environ)
    load = loader(ns)
    eco = load()  # validated in the parent, before anything starts
    return run_master(eco, load, ns, loop_name)


def run_master(eco: Ecosystem, load: Callable[[], Ecosystem], ns: RunArgs, loop_name: str) -> int:
    """Bind and fork (runtime.boot), import the loop while the relay forwards, then serve."""
    from runtime.boot.early import start_early
    from runtime.boot.relay import relay_while
    from runtime.control.protocol import default_socket_path
    from runtime.logs.formats import LogFormat, default_format

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
        sink = LogSink(1, fmt, asyncio.get_running_loop())
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
