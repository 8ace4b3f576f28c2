"""docs/pm2.md covers all of pm2's schema and pm2-runtime's flags; the fixture README lists every fixture."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from runtime.cli.run import NO_EFFECT_FLAGS, REFUSED_FLAGS, build_parser
from runtime.config.keys import CANONICAL, NO_EFFECT
from runtime.control.commands import build_parser as build_client_parser

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "pm2.md"
HELP = ROOT / "docs" / "pm2-runtime-help.txt"
FIXTURES = ROOT / "tests" / "fixtures" / "pm2"

# The keys of pm2 7.0.4's lib/API/schema.json, in its order (plus its `^env_\S*$` pattern).
PM2_SCHEMA_KEYS = (
    "script", "name", "name_prefix", "filter_env", "namespace", "install_url", "cwd", "args",
    "exec_interpreter", "node_args", "out_file", "error_file", "log_file", "disable_logs",
    "log_type", "log_date_format", "time", "env", "max_memory_restart", "pid_file",
    "restart_delay", "exp_backoff_restart_delay", "source_map_support",
    "disable_source_map_support", "wait_ready", "instances", "kill_timeout",
    "shutdown_with_message", "listen_timeout", "cron_restart", "merge_logs", "vizion",
    "autostart", "autorestart", "stop_exit_codes", "watch_delay", "watch", "ignore_watch",
    "watch_options", "min_uptime", "max_restarts", "execute_command", "exec_mode", "force",
    "append_env_to_name", "post_update", "trace", "disable_trace", "v8", "event_loop_inspector",
    "deep_monitoring", "increment_var", "instance_var", "pmx", "automation", "treekill", "port",
    "username", "uid", "gid", "windowsHide", "kill_retry_time", "write", "io", "env_<name>",
)  # fmt: skip
STATUSES = frozenset({"supported", "no effect here", "refused", "TODO"})
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")
_CODE = re.compile(r"`([^`]+)`")
_FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def _status_rows() -> list[list[str]]:
    """The cells of every row of the tables that have a `status` column."""
    rows: list[list[str]] = []
    status_at: int | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            status_at = None
            continue
        cells = [cell.strip() for cell in _UNESCAPED_PIPE.split(line)[1:-1]]
        if status_at is None:
            status_at = cells.index("status") if "status" in cells else -1
        elif status_at >= 0 and not set(cells[0]) <= {"-", " "}:
            rows.append(cells)
    return rows


def _first_cells() -> str:
    return "\n".join(row[0] for row in _status_rows())


def _help_flags() -> list[str]:
    """The flags (short and long) of the Options section of pm2-runtime's --help text."""
    options = HELP.read_text(encoding="utf-8").split("Options:")[1].split("Commands:")[0]
    flags = []
    for line in options.splitlines():
        spec = line.strip().split("  ")[0]  # the flag spelling, before the description
        flags += re.findall(r"(?<![\w-])-[A-Za-z](?![\w-])|--[a-z][a-z0-9-]*", spec)
    return flags


def test_the_status_tables_have_rows() -> None:
    """The table parser finds rows, so the checks below cannot pass on an empty list."""
    assert len(_status_rows()) > 90


@pytest.mark.parametrize("key", PM2_SCHEMA_KEYS)
def test_every_schema_key_has_a_row(key: str) -> None:
    """Each key of pm2's schema.json is named in the first column of a status table."""
    assert f"`{key}`" in _first_cells()


def test_every_pm2_runtime_flag_has_a_row() -> None:
    """Each flag of `pm2-runtime --help` is named in the first column of a status table."""
    flags = _help_flags()
    assert "--web" in flags
    assert "-V" in flags
    assert len(flags) == 34  # 29 options, 5 of them with a short form too
    first = _first_cells()
    missing = [flag for flag in flags if flag not in first]
    assert missing == []


def test_every_status_is_one_of_the_four() -> None:
    """The status column holds supported, no effect here, refused or TODO, nothing else."""
    assert {row[2] for row in _status_rows()} <= STATUSES


def test_the_fixture_readme_lists_every_fixture() -> None:
    """Each ecosystem file under tests/fixtures/pm2 has a row in its README."""
    readme = (FIXTURES / "README.md").read_text(encoding="utf-8")
    files = sorted(p.name for p in FIXTURES.iterdir() if p.is_file() and p.name != "README.md")
    assert len(files) >= 18
    assert [name for name in files if f"| `{name}`" not in readme] == []


def _handled_flags() -> set[str]:
    """Every option the run command and the restart/reload verbs accept."""
    flags = set(build_parser({})._option_string_actions)
    for action in build_client_parser()._actions:
        verbs = action.choices if isinstance(action.choices, dict) else {}
        for verb in ("restart", "reload"):
            if verb in verbs:
                flags |= set(verbs[verb]._option_string_actions)
    return flags


def test_no_row_says_todo_for_what_the_runtime_handles() -> None:
    """A row naming a key of the key table or a flag the CLI takes is not TODO; pm2 keys
    and flags that the code calls "no effect" or refuses are marked so."""
    handled = _handled_flags()
    assert {"--max-memory-restart", "-c", "--update-env", "-a"} <= handled
    wrong = []
    for cells in _status_rows():
        names = [name.split()[0] for name in _CODE.findall(cells[0])]
        flags = [flag for name in _CODE.findall(cells[0]) for flag in _FLAG.findall(name)]
        status = cells[2]
        if status == "TODO" and ({*names} & set(CANONICAL) or {*flags} & handled):
            wrong.append(cells[0])
        if {*names} & set(NO_EFFECT) and status != "no effect here":
            wrong.append(cells[0])
        if {*flags} & set(REFUSED_FLAGS) and status != "refused":
            wrong.append(cells[0])
        if {*flags} & set(NO_EFFECT_FLAGS) and status != "no effect here":
            wrong.append(cells[0])
    assert wrong == []
