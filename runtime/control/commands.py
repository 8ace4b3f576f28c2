"""The pm2-style verbs against a running master: `python -m runtime list`, `stop web`, ...

Each verb is one request over the control socket (`connection`), printed by `render`;
`logs --follow` and `monit` keep their connection open.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from runtime.argv import Parser
from runtime.control.connection import TIMEOUT_S, ClientError, Connection, call, find_socket
from runtime.control.instances import instances_text
from runtime.control.listing import list_lines, list_look
from runtime.control.protocol import ALIASES, request
from runtime.control.render import format_record, show_text, sort_rows


def build_parser() -> argparse.ArgumentParser:
    """Every verb's parser (`runtime list --help`, ...)."""

    common = Parser(add_help=False)
    common.add_argument("--control", help="control socket path (default: found automatically)")
    common.add_argument("--ecosystem", help="the ecosystem file the runtime was started with")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = Parser(prog="runtime", description="Talk to a running runtime.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=Parser)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    ls = verb("list", help="every process")
    ls.add_argument(
        "--sort",
        default="id",
        help="name|id|pid|memory|cpu|status|uptime[:asc|desc]; rows without the value go last",
    )
    verb("show", help="everything about one app").add_argument("target")
    logs = verb("logs", help="recent lines, then live with --follow")
    logs.add_argument("target", nargs="?")
    logs.add_argument("--lines", type=int, default=15, help="how many (at most 10000)")
    logs.add_argument("--follow", "-f", action="store_true")
    logs.add_argument("--raw", action="store_true")
    verb("monit", help="live terminal dashboard")
    for name in ("stop", "start", "delete"):
        verb(name, help=f"{name} an app, an id or all").add_argument("target")
    for name in ("restart", "reload"):
        again = verb(name, help=f"{name} an app, an id or all")
        again.add_argument("target")
        again.add_argument(
            "--env", dest="env_name", metavar="NAME", help="re-read the file with env_NAME"
        )
        again.add_argument(
            "-a",
            "--update-env",
            action="store_true",
            help="give the apps this shell's environment (as pm2 restart --update-env)",
        )
    scale = verb("scale", help="set (N) or change (+N, -N) an app's instances")
    scale.add_argument("target")
    scale.add_argument("n")
    verb("ping", help="is the runtime there")
    return parser


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def _logs(path: str, ns: argparse.Namespace) -> int:
    args = {"lines": ns.lines, "follow": ns.follow}
    conn = Connection(path, timeout_s=None if ns.follow else TIMEOUT_S)
    try:
        conn.send(request("logs", ns.target, **args))
        for reply in conn.replies():  # the backlog, its end, then (--follow) live lines
            if "log" in reply:
                records = [reply["log"]]
            elif not reply.get("ok"):
                raise ClientError(str(reply.get("error")))
            else:
                records = reply.get("result") or []
            for record in records:
                if ns.json:
                    sys.stdout.write(json.dumps(record) + "\n")
                else:
                    sys.stdout.write(format_record(record, ns.raw) + "\n")
            sys.stdout.flush()
            if not ns.follow and "log" not in reply:
                return 0
    except KeyboardInterrupt:
        return 0
    finally:
        conn.close()
    if ns.follow:
        return 0
    raise ClientError("the runtime closed the connection before the end of the logs")


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    for i, word in enumerate(args):
        if not word.startswith("-"):
            args[i] = ALIASES.get(word, word)
            break
    ns = build_parser().parse_args(args)
    path = find_socket(ns.control, ns.ecosystem)
    if ns.verb == "logs":
        return _logs(path, ns)
    if ns.verb == "monit":
        from runtime.control.monit import run_monit

        return run_monit(path)
    if ns.verb == "scale":
        result = call(path, "scale", ns.target, n=ns.n)
    elif ns.verb in ("list", "ping"):
        result = call(path, ns.verb)
    elif ns.verb in ("restart", "reload") and (ns.env_name or ns.update_env):
        environ = dict(os.environ) if ns.update_env else None
        result = call(path, ns.verb, ns.target, env=ns.env_name, environ=environ)
    else:
        result = call(path, ns.verb, ns.target)
    if ns.json:
        _print_json(result)
    elif ns.verb == "ping":
        print(
            f"pong: runtime {result['version']} pid {result['pid']} ({', '.join(result['apps'])})"
        )
    elif ns.verb == "show":
        print("\n".join([show_text(result), *instances_text(result["processes"])]))
    else:
        rows = [r for r in result if isinstance(r, dict)] if isinstance(result, list) else []
        _print_list(sort_rows(rows, getattr(ns, "sort", "id")))
    return 0


def _print_list(rows: list[dict[str, Any]]) -> None:
    """The `list` table, fitted to this terminal (boxed and coloured on a TTY)."""
    tty = sys.stdout.isatty()
    try:
        columns = os.get_terminal_size(sys.stdout.fileno()).columns if tty else None
    except (OSError, ValueError):
        columns = None
    width, look = list_look(os.environ, tty, columns)
    encoding = sys.stdout.encoding or "utf-8"
    try:
        "┌─│↺…".encode(encoding)
    except (UnicodeEncodeError, LookupError):  # a terminal that cannot draw the box
        look = dataclasses.replace(look, box=False)
    text = "\n".join(list_lines(rows, width, look)) + "\n"
    buffer = getattr(sys.stdout, "buffer", None)  # None: a text stream set up in-process
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode(encoding, "replace"))  # "↺" on an ASCII terminal becomes "?"
    buffer.flush()
