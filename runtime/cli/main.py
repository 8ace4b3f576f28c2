"""`python -m runtime ...`: pick the command, and turn every user error into its exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from runtime.errors import EXIT_OK, EXIT_USAGE, RuntimeUserError

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def starts_a_runtime(args: Sequence[str]) -> bool:
    """`start FILE|SCRIPT ...` is pm2-runtime's run command; `start NAME` (an app, an id or
    `all` of a running runtime) is the control verb."""
    from runtime.cli.run import is_ecosystem

    target = args[1] if len(args) > 1 else ""
    return target.startswith("-") or is_ecosystem(target) or os.path.exists(target)


def dispatch(args: list[str]) -> int:
    """`check`, `start FILE`, a control verb (`list`, `stop`...), or the run command."""
    if args[:1] == ["start"] and starts_a_runtime(args):
        from runtime.cli.run import cmd_run

        return cmd_run(args[1:])
    if args[:1] == ["check"]:
        from runtime.cli.check import cmd_check

        return cmd_check(args[1:])
    from runtime.control.protocol import ALIASES, CLIENT_VERBS

    if args[:1] and (args[0] in CLIENT_VERBS or args[0] in ALIASES):
        from runtime.control.commands import main as client_main

        return client_main(args)
    from runtime.cli.run import cmd_run

    return cmd_run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The entry point: one line on stderr and a documented exit code, never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(args)
    except RuntimeUserError as exc:
        print(f"runtime: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `runtime check FILE | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except SystemExit as exc:  # argparse --help / --version
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
