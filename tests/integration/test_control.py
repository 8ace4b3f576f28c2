"""The pm2 verbs against a real running master, over its control socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, pid_alive, py, write_ecosystem
from tests.integration.test_cluster import Load, cluster_app, free_port

SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"


def cli(
    ctl: Path, *args: str, check: bool = True, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "runtime", *args, "--control", str(ctl)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", "--regid=65534", "--clear-groups", *cmd]
    # pytest-xdist gives its workers COLUMNS=80; the verbs must see no width, as from a pipe
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)}
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def rows(ctl: Path) -> list[dict[str, Any]]:
    return json.loads(cli(ctl, "list", "--json").stdout)  # type: ignore[no-any-return]


def start(run_master, tmp_path: Path, apps: list[dict[str, Any]], wait: int) -> tuple[Any, Path]:
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    m = run_master(str(eco), "--control", str(ctl))
    m.wait_event("worker_ready", count=wait)
    return m, ctl


def test_list_shows_every_worker(tmp_path: Path, run_master) -> None:
    """`list --json` has one row per worker with pid, status and memory; the table too."""
    m, ctl = start(
        run_master,
        tmp_path,
        [{"name": "a", "instances": 2, **py(SLEEPER)}, {"name": "b", **py(SLEEPER)}],
        wait=3,
    )
    data = rows(ctl)
    assert [(r["name"], r["instance"]) for r in data] == [("a", 0), ("a", 1), ("b", 0)]
    started = {r["pid"] for r in m.events("worker_started")}
    assert {r["pid"] for r in data} == started
    assert all(r["status"] == "online" and r["memory_bytes"] > 0 for r in data)
    text = cli(ctl, "ls").stdout
    assert "name" in text.splitlines()[0]
    assert len(text.splitlines()) == 4
    as_json = json.loads(cli(ctl, "list", "--sort", "name:desc", "--json").stdout)
    assert [r["id"] for r in as_json] == [r["id"] for r in data]  # --json keeps the id order
    sorted_text = cli(ctl, "status", "--sort", "name:desc").stdout.splitlines()[1:]
    assert sorted_text[0].split()[1] == "b"


def test_stop_and_start(tmp_path: Path, run_master) -> None:
    """`stop NAME` ends its workers (listed as stopped, master stays up); `start` brings them back."""
    m, ctl = start(
        run_master, tmp_path, [{"name": "a", **py(SLEEPER)}, {"name": "b", **py(SLEEPER)}], wait=2
    )
    pid = next(r["pid"] for r in rows(ctl) if r["name"] == "a")
    after = json.loads(cli(ctl, "stop", "a", "--json").stdout)
    assert not pid_alive(pid)
    assert next(r for r in after if r["name"] == "a")["status"] == "stopped"
    cli(ctl, "stop", "b")
    time.sleep(0.3)
    assert m.proc.poll() is None  # stopping by hand is not an ending for auto-exit
    cli(ctl, "start", "all")
    m.wait_for(lambda: all(r["status"] == "online" for r in rows(ctl)), timeout=20)


def test_scale_sets_the_number_of_pids(tmp_path: Path, run_master) -> None:
    """`scale NAME 4`, then `-3`: the app has exactly that many live pids."""
    _m, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}], wait=1)
    cli(ctl, "scale", "w", "4")
    live = [r["pid"] for r in rows(ctl) if r["pid"]]
    assert len(live) == 4
    assert all(pid_alive(p) for p in live)
    cli(ctl, "scale", "w", "-3")
    remaining = rows(ctl)
    assert [r["instance"] for r in remaining] == [0]
    assert sum(pid_alive(p) for p in live) == 1


def test_reload_changes_every_pid_without_failing_a_request(tmp_path: Path, run_master) -> None:
    """`reload NAME` under load: new pids everywhere, no failed request."""
    port = free_port()
    _m, ctl = start(run_master, tmp_path, [cluster_app(port, "shared")], wait=2)
    before = {r["pid"] for r in rows(ctl)}
    with Load(port) as load:
        cli(ctl, "reload", "web")
        time.sleep(0.2)
    after = {r["pid"] for r in rows(ctl)}
    assert load.failures == []
    assert before.isdisjoint(after)
    assert len(after) == 2


def test_restart_and_delete_by_id(tmp_path: Path, run_master) -> None:
    """Numeric ids work as in pm2: restart one instance, delete another."""
    _m, ctl = start(run_master, tmp_path, [{"name": "w", "instances": 2, **py(SLEEPER)}], wait=2)
    first, second = rows(ctl)
    cli(ctl, "restart", str(first["id"]))
    now = {r["id"]: r for r in rows(ctl)}
    assert now[first["id"]]["pid"] != first["pid"]
    assert now[second["id"]]["pid"] == second["pid"]
    cli(ctl, "delete", str(second["id"]))
    assert [r["id"] for r in rows(ctl)] == [first["id"]]
    assert not pid_alive(second["pid"])


def test_show_masks_secrets(tmp_path: Path, run_master) -> None:
    """`show` prints the app's settings and env with secrets masked."""
    app = {"name": "api", "env": {"API_TOKEN": "s3cr3t", "MODE": "demo"}, **py(SLEEPER)}
    _m, ctl = start(run_master, tmp_path, [app], wait=1)
    text = cli(ctl, "show", "api").stdout
    assert "MODE=demo" in text
    assert "s3cr3t" not in text
    assert "API_TOKEN=****" in text
    info = json.loads(cli(ctl, "show", "api", "--json").stdout)
    assert info["env"]["API_TOKEN"] == "****"
    assert info["processes"][0]["name"] == "api"


def test_logs_tail_and_follow(tmp_path: Path, run_master) -> None:
    """`logs NAME --lines N` prints the last lines; `--follow` streams new ones."""
    code = "import time,itertools\nfor i in itertools.count():\n    print('n', i, flush=True); time.sleep(0.05)"
    _m, ctl = start(
        run_master, tmp_path, [{"name": "t", **py(code)}, {"name": "q", **py(SLEEPER)}], wait=2
    )
    out = cli(ctl, "logs", "t", "--lines", "5", "--raw").stdout.splitlines()
    assert len(out) == 5
    assert all(line.startswith("n ") for line in out)
    numbers = [int(line.split()[1]) for line in out]
    assert numbers == sorted(numbers)
    recs = [
        json.loads(x) for x in cli(ctl, "logs", "--lines", "100000", "--json").stdout.splitlines()
    ]
    assert {"t", "q"} <= {r["app"] for r in recs}
    follow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime",
            "logs",
            "t",
            "--follow",
            "--raw",
            "--lines",
            "0",
            "--control",
            str(ctl),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    try:
        assert follow.stdout is not None
        got = [follow.stdout.readline() for _ in range(3)]
        assert all(line.startswith("n ") for line in got)
    finally:
        follow.terminate()
        follow.wait(10)
        if follow.stdout:
            follow.stdout.close()


def test_unknown_name_is_an_error_and_changes_nothing(tmp_path: Path, run_master) -> None:
    """An unknown app: one line, exit 1, the running workers untouched."""
    _m, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}], wait=1)
    before = rows(ctl)
    proc = cli(ctl, "stop", "nope", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["runtime: unknown app or id 'nope' (apps: w)"]
    after = rows(ctl)
    assert [(r["pid"], r["status"]) for r in after] == [(r["pid"], r["status"]) for r in before]


def test_second_runtime_on_the_same_ecosystem_refuses(tmp_path: Path, run_master) -> None:
    """A second master for the same ecosystem says so and exits 1 without touching the first."""
    _m, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}], wait=1)
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", str(tmp_path / "eco.json"), "--control", str(ctl)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 1
    assert "already running" in proc.stderr
    assert cli(ctl, "ping").returncode == 0


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv"
)
def test_other_uid_is_refused(tmp_path: Path, run_master) -> None:
    """A client running as another uid (nobody) is refused with a clear error."""
    _m, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}], wait=1)
    os.chmod(tmp_path, 0o755)
    os.chmod(ctl, 0o777)  # even with the file mode opened, SO_PEERCRED refuses the peer
    proc = cli(ctl, "list", check=False, user="nobody")
    assert proc.returncode == 1
    assert "permission denied" in proc.stderr


def test_ping_and_no_runtime(tmp_path: Path, run_master) -> None:
    """`ping` answers with the master's pid; a missing socket is a clear error, exit 1."""
    m, ctl = start(run_master, tmp_path, [{"name": "w", **py(SLEEPER)}], wait=1)
    assert str(m.pid) in cli(ctl, "ping").stdout
    proc = cli(tmp_path / "nothing.sock", "ping", check=False)
    assert proc.returncode == 1
    assert "no runtime is listening" in proc.stderr
    m.signal(signal.SIGTERM)
    assert m.wait_exit() == 0
    assert not ctl.exists()
