"""`list` against a real master: pm2's columns, version/user/watching, a box on a real TTY."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import ROOT, py, write_ecosystem
from tests.integration.test_control import SLEEPER, cli, rows

ANSI = re.compile(r"\x1b\[[0-9;]*m")
PM2_COLUMNS = ["id", "name", "version", "mode", "pid", "uptime", "↺", "status"]
PM2_COLUMNS += ["cpu", "mem", "user", "watching"]
PTY_READ_S = 20.0


def start(run_master: Any, tmp_path: Path) -> tuple[Any, Path]:
    """web (version key, watching src/), api (package.json), worker (no version, 2 instances)."""
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "package.json").write_text('{"name": "api", "version": "1.4.2"}')
    (tmp_path / "src").mkdir()
    apps = [
        {"name": "web", "version": "2.1.0", "watch": ["src"], **py(SLEEPER)},
        {"name": "api", "cwd": "api", **py(SLEEPER)},
        {"name": "a-worker-with-a-rather-long-name", "instances": 2, **py(SLEEPER)},
    ]
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", apps)), "--control", str(ctl))
    m.wait_event("worker_ready", count=4)
    return m, ctl


def list_on_a_tty(ctl: Path, columns: int, **env: str) -> str:
    """`runtime list` with its stdout on a real pseudo-terminal `columns` wide."""
    primary, secondary = os.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    environ.update(PYTHONPATH=str(ROOT), **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "list", "--control", str(ctl)],
        stdout=secondary,
        stderr=subprocess.PIPE,
        env=environ,
    )
    os.close(secondary)
    out = b""
    deadline = time.monotonic() + PTY_READ_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.2)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not chunk:
                break
            out += chunk
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    return out.decode().replace("\r\n", "\n")


def test_list_json_has_version_user_and_watching(tmp_path: Path, run_master: Any) -> None:
    """Rows carry the version (key, package.json, none), the user and whether the app watches."""
    _m, ctl = start(run_master, tmp_path)
    data = {(r["name"], r["instance"]): r for r in rows(ctl)}
    me = pwd.getpwuid(os.getuid()).pw_name
    assert data[("web", 0)]["version"] == "2.1.0"
    assert data[("api", 0)]["version"] == "1.4.2"
    assert data[("a-worker-with-a-rather-long-name", 1)]["version"] is None
    assert {r["user"] for r in data.values()} == {me}
    assert [r["watching"] for r in rows(ctl)] == [True, False, False, False]


def test_plain_list_fits_columns_and_shows_every_column_unbounded(
    tmp_path: Path, run_master: Any
) -> None:
    """Off a TTY: every pm2 column with no width given; with COLUMNS=80, each line fits."""
    _m, ctl = start(run_master, tmp_path)
    wide = cli(ctl, "list").stdout.splitlines()
    assert wide[0].split() == PM2_COLUMNS
    assert "\x1b" not in "".join(wide)
    assert "│" not in "".join(wide)
    assert "a-worker-with-a-rather-long-name" in wide[3]
    assert wide[1].split()[2] == "2.1.0"
    assert wide[1].split()[-1] == "enabled"
    env = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="80")
    narrow = subprocess.run(
        [sys.executable, "-m", "runtime", "list", "--control", str(ctl)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    ).stdout.splitlines()
    assert len(narrow) == 5
    assert all(len(line) <= 80 for line in narrow)
    assert narrow[0].split()[:3] == ["id", "name", "version"]
    assert "user" not in narrow[0]
    assert "watching" not in narrow[0]


def test_list_on_a_tty_is_a_coloured_box_fitted_to_it(tmp_path: Path, run_master: Any) -> None:
    """On a 120-column pty: a box no wider than 120, online in green; NO_COLOR drops colour;
    a terminal that cannot encode the box gets plain columns."""
    _m, ctl = start(run_master, tmp_path)
    text = list_on_a_tty(ctl, 120)
    lines = [line for line in text.splitlines() if line]
    assert lines[0].startswith("┌")
    assert lines[-1].startswith("└")
    assert lines[2].startswith("├")
    assert len(lines) == 4 + 4
    assert "\x1b[32monline" in text
    assert all(len(ANSI.sub("", line)) <= 120 for line in lines)
    plain = list_on_a_tty(ctl, 80, NO_COLOR="1")
    assert "\x1b" not in plain
    assert all(len(line) <= 80 for line in plain.splitlines())
    assert plain.startswith("┌")
    assert "a-worker-with-a-rather-long-name" not in plain
    assert "a-worker-with-a-rather" in plain
    ascii_only = list_on_a_tty(ctl, 120, PYTHONIOENCODING="ascii", NO_COLOR="1")
    assert ascii_only.splitlines()[0].split()[:7] == [*PM2_COLUMNS[:6], "?"]  # no box, ↺ as ?


def test_sort_memory_desc_puts_a_stopped_app_last(tmp_path: Path, run_master: Any) -> None:
    """`--sort memory:desc` (and asc): the stopped app, which has no memory, comes last."""
    m, ctl = start(run_master, tmp_path)
    cli(ctl, "stop", "web")
    m.wait_event("worker_exited", app="web")
    for order in ("desc", "asc"):
        out = cli(ctl, "list", "--sort", f"memory:{order}").stdout.splitlines()
        assert out[-1].split()[1] == "web", out
        assert "stopped" in out[-1]
    as_json = json.loads(cli(ctl, "list", "--sort", "memory:desc", "--json").stdout)
    assert [r["id"] for r in as_json] == [0, 1, 2, 3]  # --json keeps the id order


def test_version_is_the_running_codes_until_a_restart(tmp_path: Path, run_master: Any) -> None:
    """A deploy that changes package.json shows in `list` once the workers restart onto it."""
    _m, ctl = start(run_master, tmp_path)
    (tmp_path / "api" / "package.json").write_text('{"name": "api", "version": "1.5.0"}')
    assert [r["version"] for r in rows(ctl) if r["name"] == "api"] == ["1.4.2"]
    old = next(r["pid"] for r in rows(ctl) if r["name"] == "api")
    cli(ctl, "restart", "api")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        api = next(r for r in rows(ctl) if r["name"] == "api")
        if api["pid"] not in (None, old):
            break
        time.sleep(0.1)
    assert api["version"] == "1.5.0"


def test_the_first_list_shows_cpu(tmp_path: Path, run_master: Any) -> None:
    """A master that samples nothing by itself still gives `list` every worker's CPU."""
    _m, ctl = start(run_master, tmp_path)
    assert all(r["cpu_percent"] is not None for r in rows(ctl))
