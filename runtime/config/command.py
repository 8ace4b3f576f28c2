"""One app's command line: interpreter by extension, a file run as itself, or a shell
command line (edge: looks at the file system and PATH; docs/configuration.md has the rules)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from runtime.config.spec import RawApp
from runtime.config.values import parse_text, parse_words

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
Command = tuple[str, str | None, tuple[str, ...], tuple[str, ...], tuple[str, ...]]
HEAD_BYTES = 1024  # read to tell a text script from a binary, and find its #! line
# Programs that are node, or start node with the user's NODE_OPTIONS and inherited fds.
NODE_PROGRAMS = frozenset(
    ("node", "nodejs", "npm", "npx", "yarn", "pnpm", "next", "nuxt", "nuxi", "ts-node", "tsx")
)


def _which(name: str, path: str) -> str | None:
    """A program on `path` (a bare name only: a name with `/` is a path, not a command)."""
    if not name or "/" in name:
        return None
    return shutil.which(name, path=path)


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


def _unused_interpreter_args(
    app: RawApp, iargs: tuple[str, ...], why: str, warnings: list[str]
) -> None:
    """pm2 ignores `node_args` where no interpreter takes them; so do we, and say so."""
    if iargs:
        warnings.append(f"{app.where}: interpreter_args: has no effect with {why} (as in pm2)")


_SHELL_KEYWORDS = frozenset(("exec", "cd", "export", "set", "if", "for", "while", "case", "{"))


def _has_control_operators(command: str) -> bool:
    """Unquoted `;`, `&`, `|`, `(`, `)`, newlines or `#`, or a leading shell keyword.

    A scan of the quoting rules (`shlex` splits words but does not say which `;` was
    quoted); when in doubt (unbalanced quotes, a comment) the answer is yes, so the line
    runs as it is.
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


def resolve_command(app: RawApp, script: str, cwd: str, path: str, warnings: list[str]) -> Command:
    """(script path, interpreter, argv, interpreter args, args) for one app, as pm2 infers
    them (docs/configuration.md, "Interpreter inference")."""
    explicit = app.get("interpreter", parse_text, None)
    none = explicit is not None and explicit.strip().lower() == "none"
    iargs = app.get("interpreter_args", parse_words, ())
    args = app.get("args", parse_words, ())
    candidate = os.path.normpath(os.path.join(cwd, os.path.expanduser(script)))
    if os.path.isdir(candidate) and not none:  # node runs the package: main, or index.js
        interp = _find_interpreter(app, (explicit or "node").strip(), path, script, cwd)
        return candidate, interp, (interp, *iargs, candidate, *args), iargs, args
    target = candidate if os.path.isfile(candidate) else _which(script, path)
    if target is None and (explicit is None or none) and any(c.isspace() for c in script.strip()):
        _unused_interpreter_args(app, iargs, "a shell command line", warnings)
        command = f"{script} {shlex.join(args)}" if args else script
        return script, None, shell_argv(command), (), args
    if target is None:
        raise app.error(
            "script", f"expected a file under {cwd} or a command on PATH, got {script!r}"
        )
    name = _interpreter_name(app, target, explicit, none, target == candidate)
    if name is None:
        _unused_interpreter_args(app, iargs, "a script run as itself", warnings)
        return target, None, (target, *args), (), args
    interp = _find_interpreter(app, name, path, script, cwd)
    return target, interp, (interp, *iargs, target, *args), iargs, args


def _interpreter_name(
    app: RawApp, target: str, explicit: str | None, none: bool, in_cwd: bool
) -> str | None:
    """What runs `target`: the `interpreter` key, its extension, itself (executable, or
    `interpreter: none`), its `#!` line, or node (pm2 runs any other text file with node)."""
    if explicit is not None and not none:
        return explicit.strip()
    by_extension = INTERPRETERS.get(os.path.splitext(target)[1].lower())
    if by_extension is not None and in_cwd and not none:
        return by_extension
    if none or os.access(target, os.X_OK) or not in_cwd:
        return None
    head = _head(target)
    if b"\0" in head:
        message = f"{target} is not executable and its extension names no interpreter"
        raise app.error("script", message + " (set interpreter)")
    return _shebang(head) or "node"


def _head(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(HEAD_BYTES)
    except OSError:
        return b""


def _shebang(head: bytes) -> str | None:
    """The program a `#!` line names (`#!/usr/bin/env node` -> `node`), if there is one."""
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if words and os.path.basename(words[0]) == "env" and len(words) > 1:
        return words[1]
    return words[0] if words else None


def runs_node(argv: tuple[str, ...]) -> bool:
    """Whether the command starts node: its program (or a shell line's first command) is one
    of NODE_PROGRAMS. Such workers get an IPC channel and SIGINT to stop, as under pm2."""
    words = list(argv)
    if words[:2] == ["/bin/sh", "-c"] and len(words) == 3:
        try:
            words = shlex.split(words[2])
        except ValueError:
            return False
        while words and (words[0] == "exec" or "=" in words[0]):
            words.pop(0)
    return bool(words) and os.path.basename(words[0]) in NODE_PROGRAMS
