"""The master's path to its first fork leaves the event loop and its libraries unimported.

The master binds its sockets and forks its workers before it imports its event loop
(runtime.boot): the workers boot while it imports. This pins what is kept off that path,
so a convenient import at the top of a start-up module does not quietly bring one back.
The check runs a real command line of each form in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules the start-up path must not import: what the master needs only once it serves.
KEPT_OUT = {
    "asyncio": "the event loop: imported while the relay forwards the first lines",
    "uvloop": "the master's loop, likewise",
    "structlog": "renders the master's events, once the loop runs",
    "psutil": "metrics and process trees, on the first sample",
    "prometheus_client": "only with --web, on the first /metrics",
    "croniter": "only for apps with cron_restart",
    "curses": "only for monit",
    "tomllib": "only for a .toml ecosystem (its import compiles regular expressions: ~10 ms)",
    "subprocess": "only for a .js ecosystem, which node evaluates",
}

PROBE = """
import sys
from runtime.cli import run
ns = run.parse_run_args(sys.argv[1:])
eco = run.loader(ns)()
import runtime.boot.early, runtime.boot.relay, runtime.logs.formats, runtime.control.protocol
from runtime.control.protocol import default_socket_path
from runtime.proc.listeners import bind_apps
default_socket_path(run.control_key(ns))
for listeners in bind_apps(eco.file, eco.apps).values():
    if listeners is not None:
        listeners.close()
print(" ".join(sorted(sys.modules)))
"""


def _write_inputs(tmp_path: Path, form: str) -> list[str]:
    """The command line of one form, with its files written under `tmp_path`."""
    app = tmp_path / "app.py"
    app.write_text("print('hi')\n")
    if form == "procfile":
        (tmp_path / "Procfile").write_text(f"web: {sys.executable} {app} --port $PORT\n")
        return [str(tmp_path / "Procfile")]
    if form == "yaml":
        text = (ROOT / "examples" / "heroku-app" / "ecosystem.config.yml").read_text()
        (tmp_path / "ecosystem.config.yml").write_text(text)
        for script in ("app.py", "worker.py"):
            (tmp_path / script).write_text("print('hi')\n")
        return [str(tmp_path / "ecosystem.config.yml"), "--env", "prod"]
    if form == "direct":
        return [str(app), "-i", "2", "--name", "web", "--env-var", "A=1"]
    eco = tmp_path / "eco.json"
    apps = [
        {
            "name": "worker",
            "script": str(app),
            "instances": "2",
            "env": {"A": "1"},
            "max_memory_restart": "200M",
            "kill_timeout": "5s",
        },
        {"name": "web", "script": str(app), "exec_mode": "cluster", "listen": "localhost:0"},
    ]
    eco.write_text(json.dumps({"apps": apps}))
    return [str(eco), "--env", "prod"]


@pytest.mark.parametrize("form", ["json", "yaml", "procfile", "direct"])
def test_start_up_path_keeps_heavy_modules_out(tmp_path: Path, form: str) -> None:
    """Parsing the command line, loading the apps (a JSON ecosystem with a listener, a
    Procfile, the direct form), binding listeners and importing everything the master
    needs up to the first fork and the relay leaves each listed module unimported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # $PORT: the test's own (tests/conftest.py)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *_write_inputs(tmp_path, form)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "runtime.boot.early" in loaded  # the probe really ran the path
    assert {m: why for m, why in KEPT_OUT.items() if m in loaded} == {}
