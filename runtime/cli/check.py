"""`python -m runtime check FILE`: validate and print the resolved apps (secrets masked)."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence

from runtime.argv import Parser
from runtime.config.export import spec_json
from runtime.config.keys import KEYS
from runtime.config.load import Ecosystem, load_ecosystem
from runtime.config.secrets import join_masked, mask_command, mask_env
from runtime.config.spec import AppSpec
from runtime.errors import EXIT_OK

USAGE = "usage: runtime check FILE [--env NAME] [--only A,B] [--json]"


def cmd_check(argv: Sequence[str]) -> int:
    """Validate like the run command, print every setting, exit 0 (or 78 on a bad file)."""
    parser = Parser(prog="runtime check", usage=USAGE)
    parser.add_argument("file")
    parser.add_argument("--env", dest="env_name")
    parser.add_argument("--only")
    parser.add_argument("--json", action="store_true", help="the resolved apps as JSON")
    ns = parser.parse_args(argv)
    only = [name for name in ns.only.split(",") if name] if ns.only else None
    eco = load_ecosystem(ns.file, env_name=ns.env_name, only=only)
    for warning in eco.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if ns.json:
        apps = [spec_json(spec) for spec in eco.apps]
        print(
            json.dumps({"file": eco.file, "apps": apps, "warnings": list(eco.warnings)}, indent=2)
        )
    else:
        print(format_check(eco))
    return EXIT_OK


def _show(value: object, unit: str = "") -> str:
    if value is None or value in ((), frozenset()):
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    if isinstance(value, frozenset):
        return ", ".join(str(v) for v in sorted(value))
    return f"{value} {unit}" if unit else str(value)


def _shown_key(spec: AppSpec, name: str, value: object, unit: str) -> str:
    """One key's resolved value, with what `check` readers need to see beside it."""
    if name in ("args", "interpreter_args") and isinstance(value, tuple) and value:
        return join_masked(value)
    if name == "kill_signal" and isinstance(value, int):
        return signal.Signals(value).name
    if name == "exec_mode" and spec.exec_mode_why != "exec_mode":
        return f"{value} ({spec.exec_mode_why})"
    return _show(value, unit)


def format_check(eco: Ecosystem) -> str:
    """Every app as resolved, key by key of the key table (`config.keys`), secrets masked."""
    count = len(eco.apps)
    lines = [f"{eco.file}: {count} app{'s' if count != 1 else ''}"]
    for spec in eco.apps:
        lines += [f"\n{spec.name}", f"  script: {mask_command(spec.script)}"]
        lines.append(f"  argv: {join_masked(spec.argv)}")
        for key in KEYS:
            field = key.spec_field
            if field is None or key.name in ("name", "script", "env"):
                continue
            lines.append(
                f"  {key.name}: {_shown_key(spec, key.name, getattr(spec, field), key.unit)}"
            )
        env = mask_env(spec.env)
        lines.append("  env:" + ("" if env else " -"))
        lines += [f"    {k}={v}" for k, v in sorted(env.items())]
    return "\n".join(lines)
