"""The key table (`runtime.config.keys`): every AppSpec setting declared once, docs in sync."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from runtime.config.keys import BY_NAME, CANONICAL, KEYS, NO_EFFECT, camel, unknown_key_warning
from runtime.config.reference import keys_markdown, with_keys
from runtime.config.spec import AppSpec

ROOT = Path(__file__).resolve().parents[2]
RESOLVED_ONLY = {
    "argv",
    "node",
    "exec_mode_why",
    "inherit_env",
    "run_as",
    "autoscale",
}  # found by config.load


def test_every_spec_field_comes_from_one_key() -> None:
    """Each AppSpec field is filled by exactly one key of the table (or resolved by load)."""
    fields = {f.name for f in dataclasses.fields(AppSpec)}
    from_keys = [k.spec_field for k in KEYS if k.spec_field is not None]
    assert len(from_keys) == len(set(from_keys))
    assert fields - set(from_keys) == RESOLVED_ONLY
    assert set(from_keys) <= fields


def test_aliases_and_camel_case_name_their_key() -> None:
    """pm2's aliases and every camelCase spelling lead to the canonical key."""
    assert CANONICAL["cmd"] == "script"
    assert CANONICAL["nodeArgs"] == "interpreter_args"
    assert CANONICAL["maxMemoryRestart"] == "max_memory_restart"
    assert all(CANONICAL[camel(k.name)] == k.name for k in KEYS)


def test_no_key_is_both_known_and_without_effect() -> None:
    """A key is either in the table or listed as having no effect, never both."""
    assert set(NO_EFFECT).isdisjoint(CANONICAL)


@pytest.mark.parametrize(
    ("spelled", "expected"),
    [
        ("instnaces", "e: unknown key 'instnaces' (did you mean 'instances'?)"),
        (
            "maxMemoryRestrat",
            "e: unknown key 'maxMemoryRestrat' (did you mean 'max_memory_restart'?)",
        ),
        (
            "out_file",
            "e: pm2 key 'out_file' has no effect here (logs go to stdout as one line per record)",
        ),
        ("zzzz", "e: unknown key 'zzzz'"),
    ],
)
def test_unknown_key_warning(spelled: str, expected: str) -> None:
    """Unknown keys get the nearest known key; pm2's inert keys say why they do nothing."""
    assert unknown_key_warning("e", spelled) == expected


def test_configuration_page_matches_the_table() -> None:
    """docs/configuration.md's key table is the one generated from the table (regenerate with
    `python -m runtime.config.reference --write docs/configuration.md`)."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert with_keys(page) == page
    assert "| `kill_timeout` | duration | 5000 |" in keys_markdown()


def test_a_default_is_stated_once() -> None:
    """The restart policy's defaults are the table's (RestartPolicy reads them from it)."""
    from runtime.policy.restart import RestartPolicy

    policy = RestartPolicy()
    assert policy.max_restarts == BY_NAME["max_restarts"].default == 16
    assert policy.min_uptime_ms == BY_NAME["min_uptime"].default
