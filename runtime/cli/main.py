"""Command line: argv to a command; the only place where errors become exit codes."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from runtime.errors import EXIT_OK, EXIT_USAGE, RuntimeUserError, UsageError

TYPE_CHECKING = False  # typing is not imported on the start-up path
if TYPE_CHECKING:
    from runtime.cli.options import RunArgs
    from runtime.config.spec import SocketSharing

MAX_SHUTDOWN_DELAY_S = 3600.0
ECOSYSTEM_SUFFIXES = (".yml", ".yaml", ".json", ".toml", ".config.js", ".config.cjs", ".cjs")


CHECK_USAGE = "usage: runtime check FILE [--env NAME] [--only A,B]"


def is_ecosystem(target: str) -> bool:
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


def _loader(ns: RunArgs) -> Callable[[], object]:
    from runtime.config import load as config

    only = [name for name in ns.only.split(",") if name] if ns.only else None
    if is_ecosystem(ns.target):
        if ns.args:
            raise UsageError(f"unexpected arguments after an ecosystem file: {' '.join(ns.args)}")
        return partial(config.load_ecosystem, ns.target, env_name=ns.env_name, only=only)
    args = list(ns.args)
    return partial(
        config.direct_app,
        ns.target,
        name=ns.name,
        instances=ns.instances,
        exec_mode=ns.exec_mode,
        env_vars=_env_vars(ns.env_var),
        args=args,
        interpreter=ns.interpreter,
        watch=ns.watch,
        environ=None,
        cwd=None,
    )


def _control_key(ns: RunArgs) -> str:
    """What names the control socket: the ecosystem file, or the script and app name."""
    if is_ecosystem(ns.target):
        return str(ns.target)
    return f"{ns.target}.{ns.name}" if ns.name else str(ns.target)


def cmd_check(argv: Sequence[str]) -> int:
    from runtime.argv import Parser
    from runtime.config import load as config

    parser = Parser(prog="runtime check", usage=CHECK_USAGE)
    parser.add_argument("file")
    parser.add_argument("--env", dest="env_name")
    parser.add_argument("--only")
    ns = parser.parse_args(argv)
    only = [name for name in ns.only.split(",") if name] if ns.only else None
    eco = config.load_ecosystem(ns.file, env_name=ns.env_name, only=only)
    for warning in eco.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(config.format_check(eco))
    return EXIT_OK


def cmd_run(argv: Sequence[str]) -> int:
    from runtime.cli.options import parse_run_args

    ns = parse_run_args(argv)
    if not 0.0 <= ns.shutdown_delay <= MAX_SHUTDOWN_DELAY_S:  # also refuses nan and inf
        raise UsageError(f"--shutdown-delay expects 0 to 3600 seconds, got {ns.shutdown_delay}")
    load = _loader(ns)
    if ns.socket_sharing:
        load = partial(_with_sharing, load, ns.socket_sharing)
    eco = load()  # validated in the parent, before anything starts
    return _run_master(eco, load, ns)


def _with_sharing(load: Callable[[], object], sharing: str) -> object:
    """The ecosystem with `--socket-sharing` applied to every app."""
    from runtime.config.load import Ecosystem
    from runtime.record import replace

    eco = load()
    assert isinstance(eco, Ecosystem)
    mode: SocketSharing = "shared" if sharing == "shared" else "reuseport"
    apps = tuple(replace(app, socket_sharing=mode) for app in eco.apps)
    return replace(eco, apps=apps)


def _run_master(eco: object, load: Callable[[], object], ns: RunArgs) -> int:
    from runtime.boot.early import start_early
    from runtime.config.load import Ecosystem
    from runtime.control.protocol import default_socket_path

    assert isinstance(eco, Ecosystem)
    control_path = ns.control or default_socket_path(_control_key(ns))
    if ns.web is not None:
        from runtime.observe.webspec import parse_web_spec

        parse_web_spec(ns.web)  # a bad --web is refused before anything starts
    loop_name = event_loop_choice(os.environ)
    if loop_name == "asyncio" and ns.web is None:
        # asyncio imports ssl only to offer TLS, which the master never uses: keeping it
        # out saves about 6 MB of resident memory (OpenSSL's tables). uvloop cannot load
        # without ssl, and --web's prometheus_client imports it too.
        sys.modules.setdefault("ssl", None)  # type: ignore[arg-type]
    # Sockets bound and workers forked before asyncio is even imported (runtime.boot.early).
    early = start_early(eco, control_path)
    try:
        from runtime.boot.relay import relay_while
        from runtime.logs.formats import LogFormat, default_format

        fmt = LogFormat(ns.log_format) if ns.log_format else default_format(1)
        # The event loop's modules load here while a helper thread forwards the
        # workers' first lines (runtime.boot.relay).
        relay_while(partial(_import_loop_modules, loop_name), early, eco, fmt)
        import asyncio

        from runtime.logs.sink import LogSink
        from runtime.supervise.supervisor import Options, Supervisor
    except BaseException:
        early.close()
        raise

    async def main() -> int:
        sink = LogSink(1, fmt, asyncio.get_running_loop())
        for warning in eco.warnings:
            sink.event("config_warning", level="warning", message=warning)
        try:
            options = Options(
                auto_exit=not ns.no_auto_exit,
                reload_config=load,  # type: ignore[arg-type]
                control_path=control_path,
                web=ns.web,
                web_token=ns.web_token,
                shutdown_delay_s=ns.shutdown_delay,
            )
            return await Supervisor(eco, sink, options, early).run()
        finally:
            await sink.aclose()

    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())


LOOPS = ("asyncio", "uvloop")


def event_loop_choice(environ: Mapping[str, str]) -> str:
    """`RUNTIME_LOOP`: the standard asyncio loop (default) or uvloop, if it is installed."""
    name = environ.get("RUNTIME_LOOP", "") or "asyncio"
    if name not in LOOPS:
        raise UsageError(f"RUNTIME_LOOP must be one of {', '.join(LOOPS)}, got {name!r}")
    if name == "uvloop":
        import importlib.util

        if importlib.util.find_spec("uvloop") is None:
            raise UsageError("RUNTIME_LOOP=uvloop, but uvloop is not installed")
    return name


def _import_loop_modules(loop_name: str) -> None:
    import asyncio  # noqa: F401

    if loop_name == "uvloop":
        import uvloop  # noqa: F401

    import runtime.logs.sink
    import runtime.supervise.supervisor  # noqa: F401


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["check"]:
            return cmd_check(args[1:])
        from runtime.control.protocol import ALIASES, CLIENT_VERBS

        if args[:1] and (args[0] in CLIENT_VERBS or args[0] in ALIASES):
            from runtime.control.commands import main as client_main

            return client_main(args)
        return cmd_run(args)
    except RuntimeUserError as exc:
        print(f"runtime: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `runtime check FILE | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit as exc:  # argparse --help / --version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
