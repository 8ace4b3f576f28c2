"""Which environment values must never be printed, and their masked form (pure)."""

from __future__ import annotations

from collections.abc import Mapping

SECRET_MARKERS = ("SECRET", "TOKEN", "PASSWORD", "KEY")
MASK = "****"


def is_secret(key: str) -> bool:
    """Env keys that must never be printed (SECRET, TOKEN, PASSWORD, KEY in the name)."""
    upper = key.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` safe to print."""
    return {k: (MASK if is_secret(k) else v) for k, v in env.items()}
