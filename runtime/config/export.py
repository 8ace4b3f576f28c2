"""A resolved app as plain JSON values, secrets masked (`check --json`, `show --json`):
env values by key name and URL password, command lines by option name and URL password."""

from __future__ import annotations

import dataclasses
import signal

from runtime.config.secrets import mask_args, mask_command, mask_env
from runtime.config.spec import AppSpec


def spec_json(spec: AppSpec) -> dict[str, object]:
    """One resolved app as plain JSON values, secrets masked (`check --json`, `show --json`)."""
    out: dict[str, object] = {}
    for field in dataclasses.fields(spec):
        value = getattr(spec, field.name)
        if field.name == "env":
            value = mask_env(value)
        elif field.name in ("argv", "args", "interpreter_args"):
            value = mask_args(value)
        elif field.name == "script":
            value = mask_command(value)
        elif field.name == "kill_signal":
            value = signal.Signals(value).name
        elif isinstance(value, frozenset):
            value = sorted(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        out[field.name] = list(value) if isinstance(value, tuple) else value
    return out
