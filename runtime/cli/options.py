"""The run command's options: one table, read by argparse and by a fast path.

argparse costs the master about 10 ms of start-up: its import, then `gettext`, `locale`
and `shutil` (with `bz2` and `lzma`) once the first option is added (bench/RESULTS.md,
"Start-up"). The usual command lines (`runtime FILE`, `runtime FILE --env prod`,
`runtime app.py -i 4 --name web`) are plain enough to read without it. `fast_parse`
reads exactly these spellings: `--opt value`, `--opt=value`, `-i value`, `-x value`,
flags, positionals anywhere and `--` once after the target. It gives up (None) on
anything else: `-h`, `--version`, abbreviations, `-i4`, a value starting with `-`, a
bad choice or number, no target. argparse then parses the line and reports errors the
usual way. A property test (tests/unit/test_runargs.py) checks that both agree
wherever the fast path answers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from runtime import __version__
from runtime.record import field, record

TYPE_CHECKING = False  # typing and argparse stay unimported on the fast path
if TYPE_CHECKING:
    import argparse

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

LOG_FORMATS = ("json", "pretty", "pm2", "raw")
WEB_TOKEN_VAR = "RUNTIME_WEB_TOKEN"


@record
class Option:
    """One option of the run command. `kind`: value, flag (store_true), append or float."""

    flags: tuple[str, ...]
    dest: str
    help: str
    kind: str = "value"
    metavar: str | None = None
    choices: tuple[str, ...] | None = None


OPTIONS = (
    Option(("--env",), "env_name", "merge env_NAME over env", metavar="NAME"),
    Option(("--only",), "only", "start only these apps", metavar="A,B"),
    Option(
        ("--log-format",),
        "log_format",
        "default: pretty on a TTY, else json",
        choices=LOG_FORMATS,
    ),
    Option(("--no-auto-exit",), "no_auto_exit", "keep running when every app has ended", "flag"),
    Option(
        ("--control",),
        "control",
        "control socket (default: one per ecosystem, under $XDG_RUNTIME_DIR or /tmp)",
        metavar="PATH",
    ),
    Option(
        ("--socket-sharing",),
        "socket_sharing",
        "override every app's socket_sharing (default per app: reuseport)",
        choices=("shared", "reuseport"),
    ),
    Option(
        ("--web",),
        "web",
        "serve /health, /status, /metrics and a dashboard (host 127.0.0.1 by default)",
        metavar="[HOST:]PORT",
    ),
    Option(
        ("--web-token",),
        "web_token",
        f"bearer token for everything but /health (default: ${WEB_TOKEN_VAR})",
        metavar="TOKEN",
    ),
    Option(
        ("--shutdown-delay",),
        "shutdown_delay",
        "on SIGTERM, keep serving this long while /health answers 503 (default 0)",
        "float",
        metavar="SECONDS",
    ),
)
DIRECT_TITLE = "direct form (a script instead of an ecosystem file)"
DIRECT_OPTIONS = (
    Option(("-i", "--instances"), "instances", "N, max, or -1", metavar="N"),
    Option(("--name",), "name", "app name (default: the script's basename)"),
    Option(
        ("--env-var",),
        "env_var",
        "an environment variable for the app (repeatable)",
        "append",
        metavar="KEY=VALUE",
    ),
    Option(("--interpreter",), "interpreter", "run the script with this program"),
    Option(("-x", "--exec-mode"), "exec_mode", "", choices=("fork", "cluster")),
    Option(("--watch",), "watch", "restart on file changes in cwd", "flag"),
)


@record(frozen=False)
class RunArgs:
    """The run command's arguments, from either parser."""

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


def _add(target: argparse._ActionsContainer, opt: Option, environ: Mapping[str, str]) -> None:
    kwargs: dict[str, object] = {"dest": opt.dest}
    if opt.help:
        kwargs["help"] = opt.help
    if opt.metavar is not None:
        kwargs["metavar"] = opt.metavar
    if opt.choices is not None:
        kwargs["choices"] = opt.choices
    if opt.kind == "flag":
        kwargs["action"] = "store_true"
    elif opt.kind == "append":
        kwargs.update(action="append", default=[])
    elif opt.kind == "float":
        kwargs.update(type=float, default=0.0)
    if opt.dest == "web_token":
        kwargs["default"] = environ.get(WEB_TOKEN_VAR)
    target.add_argument(*opt.flags, **kwargs)  # type: ignore[arg-type]


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The argparse parser: help, `--version`, and every line the fast path gives up on."""
    import argparse

    from runtime.argv import Parser

    env = os.environ if environ is None else environ
    parser = Parser(
        prog="runtime",
        description="A foreground process runtime for containers (the Python pm2-runtime).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"runtime {__version__}")
    parser.add_argument("target", help="ecosystem file (YAML, JSON, TOML, JS, Procfile) or script")
    parser.add_argument("args", nargs="*", help="script arguments (direct form; after --)")
    for opt in OPTIONS:
        _add(parser, opt, env)
    direct = parser.add_argument_group(DIRECT_TITLE)
    for opt in DIRECT_OPTIONS:
        _add(direct, opt, env)
    return parser


_BY_FLAG = {flag: opt for opt in (*OPTIONS, *DIRECT_OPTIONS) for flag in opt.flags}


_GIVE_UP = object()


def _convert(opt: Option, value: str) -> object:
    """The option's value as argparse would store it, or `_GIVE_UP`."""
    if opt.choices is not None and value not in opt.choices:
        return _GIVE_UP
    if opt.kind == "float":
        try:
            return float(value)
        except ValueError:
            return _GIVE_UP
    return value


def fast_parse(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> RunArgs | None:
    """The arguments of a plain command line, or None for argparse to parse (see above)."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {"web_token": env.get(WEB_TOKEN_VAR)}
    appended: dict[str, list[str]] = {}  # --env-var, in order
    positionals: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token == "--":
            rest = list(tokens)  # positional, whatever they look like
            if not positionals or "--" in rest:  # argparse has quirks there
                return None
            positionals += rest
            break
        if not token.startswith("-"):
            positionals.append(token)
            continue
        name, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        opt = _BY_FLAG.get(name)
        if opt is None or (opt.kind == "flag" and eq):
            return None
        if opt.kind == "flag":
            values[opt.dest] = True
            continue
        raw = inline if eq else next(tokens, "-")
        value = _convert(opt, raw)
        if value is _GIVE_UP or (not eq and raw.startswith("-")):
            return None
        if opt.kind == "append":
            appended.setdefault(opt.dest, []).append(raw)
        else:
            values[opt.dest] = value
    if not positionals:
        return None
    return RunArgs(positionals[0], positionals[1:], **values, **appended)  # type: ignore[arg-type]


def parse_run_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> RunArgs:
    """The run command's arguments: the fast path, else argparse (which may raise or exit)."""
    fast = fast_parse(argv, environ)
    if fast is not None:
        return fast
    ns = build_parser(environ).parse_intermixed_args(argv)
    return RunArgs(**vars(ns))
