"""One app's command line: interpreter by extension, a file run as itself, or a shell
command line (edge: looks at the file system and PATH; docs/configuration.md has the rules)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys

from runtime.config.spec import RawApp
from runtime.config.values import parse_text, parse_words
from runtime.errors import ConfigError

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


def _no_interpreter_args(app: RawApp, iargs: tuple[str, ...], why: str) -> None:
    if iargs:
        raise app.error("interpreter_args", f"conflicts with {why} (no interpreter to pass them)")


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


def _missing_script(app: RawApp, script: str, cwd: str) -> ConfigError:
    return app.error("script", f"expected a file under {cwd} or a command on PATH, got {script!r}")


def resolve_command(app: RawApp, script: str, cwd: str, path: str) -> Command:
    """(script path, interpreter, argv, interpreter args, args) for one app."""
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
