"""The pm2-style verbs against a running master (`python -m runtime list`, ...).

Start-up time matters here (`list` should answer in well under 100 ms), so this module
imports only the standard library and the protocol module.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence

from runtime.control.protocol import (
    ALIASES,
    MAX_LINE,
    SOCKET_SUFFIX,
    control_dir,
    default_socket_path,
    request,
    socket_is_live,
)
from runtime.errors import RuntimeUserError, UsageError

TYPE_CHECKING = False  # typing is not imported at run time (start-up time)
if TYPE_CHECKING:
    import argparse
    from typing import Any

SORT_KEYS = ("name", "id", "pid", "memory", "cpu", "status", "uptime")
TIMEOUT_S = 60.0


class ClientError(RuntimeUserError):
    """A control request that failed: one line, exit 1."""


def find_socket(explicit: str | None, ecosystem: str | None) -> str:
    """`--control`, `$RUNTIME_CONTROL`, the ecosystem's own socket, or the only live one."""
    if explicit:
        return explicit
    if os.environ.get("RUNTIME_CONTROL"):
        return os.environ["RUNTIME_CONTROL"]
    if ecosystem:
        return default_socket_path(ecosystem)
    directory = control_dir()
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SOCKET_SUFFIX))
    except OSError:
        names = []
    live = [p for p in (os.path.join(directory, n) for n in names) if socket_is_live(p)]
    if len(live) == 1:
        return live[0]
    if not live:
        raise ClientError(f"no running runtime found in {directory} (pass --control PATH)")
    shown = ", ".join(os.path.basename(p) for p in live)
    raise ClientError(
        f"several runtimes are running ({shown}): pass --control PATH or --ecosystem FILE"
    )


class Connection:
    """One request/response exchange (or a stream of replies) over the control socket."""

    def __init__(self, path: str, timeout_s: float | None = TIMEOUT_S) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            raise ClientError(f"no runtime is listening on {path}") from None
        except PermissionError:
            raise ClientError(f"permission denied on {path}: run as the runtime's user") from None
        except OSError as exc:
            raise ClientError(
                f"cannot reach the runtime at {path}: {exc.strerror or exc}"
            ) from None
        self._file = self.sock.makefile("rb")

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(message).encode() + b"\n")

    def replies(self) -> Iterator[dict[str, Any]]:
        while line := self._file.readline(MAX_LINE):
            reply = json.loads(line)
            if not isinstance(reply, dict):
                raise ClientError("malformed reply from the runtime")
            yield reply

    def close(self) -> None:
        self._file.close()
        self.sock.close()


def call(path: str, cmd: str, target: str | None = None, **args: Any) -> Any:
    """Send one request; return its result or raise ClientError with the master's message."""
    conn = Connection(path)
    try:
        conn.send(request(cmd, target, **args))
        for reply in conn.replies():
            if not reply.get("ok"):
                raise ClientError(str(reply.get("error", "request failed")))
            return reply.get("result")
        raise ClientError("the runtime closed the connection without answering")
    except TimeoutError:
        raise ClientError(f"no answer from the runtime within {TIMEOUT_S:.0f} s") from None
    finally:
        conn.close()


# ----- rendering ---------------------------------------------------------------------


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("b", "kb", "mb", "gb"):
        if n < 1024 or unit == "gb":
            return f"{n:.0f}{unit}" if unit == "b" else f"{n:.1f}{unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n}"


def human_uptime(seconds: float | None) -> str:
    if not seconds:
        return "0"
    s = int(seconds)
    for size, unit in ((86400, "D"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


COLUMNS = (
    "id",
    "name",
    "mode",
    "instance",
    "pid",
    "status",
    "uptime",
    "↺",
    "cpu",
    "memory",
    "version",
)


def table(rows: Sequence[dict[str, Any]]) -> str:
    cells = [
        [
            str(r["id"]),
            r["name"],
            r["mode"],
            str(r["instance"]),
            str(r["pid"] or "-"),
            r["status"],
            human_uptime(r["uptime_s"]),
            str(r["restarts"]),
            "-" if r["cpu_percent"] is None else f"{r['cpu_percent']}%",
            human_bytes(r["memory_bytes"]),
            r["version"] or "-",
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(COLUMNS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


_SORT_FIELDS = {
    "name": "name",
    "id": "id",
    "pid": "pid",
    "memory": "memory_bytes",
    "cpu": "cpu_percent",
    "status": "status",
    "uptime": "uptime_s",
}


def sort_rows(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    key, _, order = spec.partition(":")
    if key not in _SORT_FIELDS or order not in ("", "asc", "desc"):
        raise UsageError(f"--sort expects one of {'|'.join(SORT_KEYS)}[:asc|desc], got {spec!r}")
    field = _SORT_FIELDS[key]
    return sorted(
        rows,
        key=lambda r: (
            (r[field] is None, r[field] or 0) if field not in ("name", "status") else r[field]
        ),
        reverse=order == "desc",
    )


def format_record(record: dict[str, Any], raw: bool) -> str:
    if raw:
        return str(record.get("message", ""))
    prefix = f"{record.get('app')}#{record.get('instance')}"
    mark = " err" if record.get("stream") == "stderr" else ""
    return f"{record.get('timestamp', '')} {prefix}{mark} | {record.get('message', '')}"


def show_text(info: dict[str, Any]) -> str:
    lines = [f"{info['name']}"]
    skip = {"name", "env", "processes", "exits"}
    width = max(len(k) for k in info)
    lines += [f"  {k.ljust(width)}  {v}" for k, v in info.items() if k not in skip]
    lines.append("  env:")
    lines += [f"    {k}={v}" for k, v in sorted(info["env"].items())] or ["    -"]
    lines.append("  recent exits:")
    for e in info["exits"] or []:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e["at"]))
        how = f"signal {e['signal']}" if e["signal"] is not None else f"code {e['code']}"
        lines.append(f"    {when} #{e['instance']} {how}")
    if not info["exits"]:
        lines.append("    -")
    lines.append(table(info["processes"]))
    return "\n".join(lines)


# ----- commands ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full parser: for --help and for anything the fast path does not take."""

    from runtime.argv import Parser as _Parser

    common = _Parser(add_help=False)
    common.add_argument("--control", help="control socket path (default: found automatically)")
    common.add_argument("--ecosystem", help="the ecosystem file the runtime was started with")
    common.add_argument("--json", action="store_true", help="machine-readable output")
    parser = _Parser(prog="runtime", description="Talk to a running runtime.")
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    def verb(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    ls = verb("list", help="every process")
    ls.add_argument("--sort", default="id", help="name|id|pid|memory|cpu|status|uptime[:asc|desc]")
    verb("show", help="everything about one app").add_argument("target")
    logs = verb("logs", help="recent lines, then live with --follow")
    logs.add_argument("target", nargs="?")
    logs.add_argument("--lines", type=int, default=15)
    logs.add_argument("--follow", "-f", action="store_true")
    logs.add_argument("--raw", action="store_true")
    verb("monit", help="live terminal dashboard")
    for name in ("stop", "start", "restart", "reload", "delete"):
        verb(name, help=f"{name} an app, an id or all").add_argument("target")
    scale = verb("scale", help="set (N) or change (+N, -N) an app's instances")
    scale.add_argument("target")
    scale.add_argument("n")
    verb("ping", help="is the runtime there")
    return parser


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")
    sys.stdout.flush()


def _logs(path: str, ns: Args) -> int:
    args = {"lines": ns.lines, "follow": ns.follow}
    conn = Connection(path, timeout_s=None if ns.follow else TIMEOUT_S)
    try:
        conn.send(request("logs", ns.target, **args))
        for reply in conn.replies():
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
            if not ns.follow:
                break
    except KeyboardInterrupt:
        pass
    finally:
        conn.close()
    return 0


class Args:
    """What a verb's command line says (the fast path fills it without argparse)."""

    def __init__(self, verb: str) -> None:
        self.verb = verb
        self.target: str | None = None
        self.n: str | None = None
        self.control: str | None = None
        self.ecosystem: str | None = None
        self.json = False
        self.sort = "id"
        self.lines = 15
        self.follow = False
        self.raw = False


_POSITIONALS = {
    "list": 0,
    "ping": 0,
    "monit": 0,
    "logs": -1,
    "show": 1,
    "stop": 1,
    "start": 1,
    "restart": 1,
    "reload": 1,
    "delete": 1,
    "scale": 2,
}
_VALUE_FLAGS = {
    "--control": "control",
    "--ecosystem": "ecosystem",
    "--sort": "sort",
    "--lines": "lines",
}
_BOOL_FLAGS = {"--json": "json", "--follow": "follow", "-f": "follow", "--raw": "raw"}


def parse_fast(argv: Sequence[str]) -> Args | None:
    """Parse the usual verb lines without importing argparse; None means "ask argparse"."""
    if not argv or argv[0] not in _POSITIONALS:
        return None
    ns, positionals, rest = Args(argv[0]), [], list(argv[1:])
    while rest:
        word = rest.pop(0)
        name, eq, value = word.partition("=")
        if name in _VALUE_FLAGS and (eq or rest):
            setattr(ns, _VALUE_FLAGS[name], value if eq else rest.pop(0))
        elif word in _BOOL_FLAGS:
            setattr(ns, _BOOL_FLAGS[word], True)
        elif word.startswith("-") and not (ns.verb == "scale" and word[1:].isdigit()):
            return None  # --help, a typo: argparse says it properly
        else:
            positionals.append(word)
    wanted = _POSITIONALS[ns.verb]
    if (wanted >= 0 and len(positionals) != wanted) or (wanted < 0 and len(positionals) > 1):
        return None
    if not str(ns.lines).isdigit():
        return None
    ns.lines = int(ns.lines)
    ns.target = positionals[0] if positionals else None
    ns.n = positionals[1] if len(positionals) > 1 else None
    return ns


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    for i, word in enumerate(args):
        if not word.startswith("-"):
            args[i] = ALIASES.get(word, word)
            break
    ns: Any = parse_fast(args) or build_parser().parse_args(args)
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
    else:
        result = call(path, ns.verb, ns.target)
    if ns.json:
        _print_json(result)
    elif ns.verb == "ping":
        print(
            f"pong: runtime {result['version']} pid {result['pid']} ({', '.join(result['apps'])})"
        )
    elif ns.verb == "show":
        print(show_text(result))
    else:
        rows = result if isinstance(result, list) else []
        print(table(sort_rows(rows, getattr(ns, "sort", "id"))))
    return 0
