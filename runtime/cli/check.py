"""`python -m runtime check FILE`: validate and print the resolved apps (secrets masked)."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Sequence

from runtime.argv import Parser
from runtime.config.load import Ecosystem, load_ecosystem
from runtime.config.secrets import mask_env
from runtime.config.spec import AppSpec
from runtime.errors import EXIT_OK

USAGE = "usage: runtime check FILE [--env NAME] [--only A,B]"


def cmd_check(argv: Sequence[str]) -> int:
    """Validate like the run command, print every setting, exit 0 (or 78 on a bad file)."""
    parser = Parser(prog="runtime check", usage=USAGE)
    parser.add_argument("file")
    parser.add_argument("--env", dest="env_name")
    parser.add_argument("--only")
    ns = parser.parse_args(argv)
    only = [name for name in ns.only.split(",") if name] if ns.only else None
    eco = load_ecosystem(ns.file, env_name=ns.env_name, only=only)
    for warning in eco.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(format_check(eco))
    return EXIT_OK


def _show(key: str, value: object) -> str:
    if value is None or value in ((), frozenset()):
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if key in ("argv", "args", "interpreter_args") and isinstance(value, tuple):
        return shlex.join(value)
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, frozenset):
        return ", ".join(str(v) for v in sorted(value))
    return str(value)


def format_check(eco: Ecosystem) -> str:
    """Every resolved app with every setting, secrets masked: the output of `check`."""
    count = len(eco.apps)
    lines = [f"{eco.file}: {count} app{'s' if count != 1 else ''}"]
    for spec in eco.apps:
        lines.append(f"\n{spec.name}")
        for name in (f.name for f in dataclasses.fields(AppSpec)):
            if name in ("name", "env"):
                continue
            lines.append(f"  {name}: {_show(name, getattr(spec, name))}")
        env = mask_env(spec.env)
        lines.append("  env:" + ("" if env else " -"))
        lines += [f"    {k}={v}" for k, v in sorted(env.items())]
    return "\n".join(lines)
