"""The master's path to its first fork imports only what it needs (bench/RESULTS.md, "Start-up").

Each module kept off this path costs milliseconds on every start; this pins the list so
a convenient import at the top of a start-up module does not quietly bring one back.
The check runs `python -S` (no site: a development venv's editable-install finder
imports `re` and `enum` itself) on a real command line and a real JSON ecosystem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Modules the start-up path must not import (each one was measured on it before).
KEPT_OUT = {
    "argparse": "the run command's fast path (runtime.cli.options)",
    "dataclasses": "records (runtime.record)",
    "inspect": "pulled in by dataclasses",
    "typing": "annotations only under TYPE_CHECKING",
    "enum": "pulled in by socket, signal and re",
    "socket": "listeners and control sockets are bound with _socket",
    "signal": "signals are held with _signal",
    "re": "regular expressions are compiled only for values that need them",
    "json": "JSON is read and written with the _json accelerator directly",
    "shlex": "only for arguments given as one string (Procfile lines are scanned by hand)",
    "asyncio": "imported after the fork, while the relay forwards the first lines",
    "yaml": "ecosystem files of the usual shape are read by runtime.yamlite",
    "threading": "the relay's helper is started with _thread",
    "ctypes": "prctl is called through _ctypes",
    "encodings.idna": "listener hosts are resolved as bytes",
    "struct": "the notify socket's credentials are read with int.from_bytes",
    "math": "not needed for two comparisons",
}

PROBE = """
import sys
from runtime.cli.options import parse_run_args
from runtime.cli import main as cli
ns = parse_run_args(sys.argv[1:])
eco = cli._loader(ns)()
import runtime.boot.early, runtime.boot.relay, runtime.logs.formats, runtime.control.protocol
from runtime.control.protocol import default_socket_path
default_socket_path(cli._control_key(ns))
for listeners in runtime.boot.early.bind_apps(eco.file, eco.apps).values():
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
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, *_write_inputs(tmp_path, form)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=30,
        check=True,
    )
    loaded = set(out.stdout.split())
    assert "runtime.boot.early" in loaded  # the probe really ran the path
    assert {m: why for m, why in KEPT_OUT.items() if m in loaded} == {}
