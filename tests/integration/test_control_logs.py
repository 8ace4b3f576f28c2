"""`logs` over the control socket: what a target selects and what a bad request gets (#13, 11)."""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Master, py
from tests.integration.test_control_bounds import cli, start

# each worker says who it is, a line every 50 ms
WHO = "import os, time\nwhile True:\n    print('i am', os.environ['RUNTIME_APP'], os.environ['RUNTIME_INSTANCE'], flush=True)\n    time.sleep(0.05)"


def ask(ctl: Path, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Send one raw request line; every reply line until the master closes (5 s at most)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(ctl))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if data.endswith(b"\n") and b'"ok"' in data:
                break
    return [json.loads(line) for line in data.splitlines()]


def test_logs_of_an_id_shows_that_instance_only(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """`logs ID` shows the lines of that app's instance, not every app's (nor its siblings')."""
    master, ctl = start(
        run_master,
        tmp_path,
        [{"name": "a", "instances": 2, **py(WHO)}, {"name": "b", **py(WHO)}],
        wait=3,
    )
    master.wait_for(
        lambda: (
            {(r["app"], r["instance"]) for r in master.lines()} >= {("a", 0), ("a", 1), ("b", 0)}
        )
    )
    ids = {
        (r["name"], r["instance"]): r["id"] for r in json.loads(cli(ctl, "list", "--json").stdout)
    }
    for (app, instance), pid in ids.items():
        out = cli(ctl, "logs", str(pid), "--lines", "50", "--json")
        assert out.returncode == 0, out.stderr
        records = [json.loads(line) for line in out.stdout.splitlines()]
        assert records
        assert {(r["app"], r["instance"]) for r in records} == {(app, instance)}
    by_app = [
        json.loads(x) for x in cli(ctl, "logs", "a", "--lines", "100", "--json").stdout.splitlines()
    ]
    assert {r["instance"] for r in by_app} == {0, 1}
    assert {r["app"] for r in by_app} == {"a"}


@pytest.mark.parametrize("lines", [None, [5], "five", -1, 1.5, True, {"n": 1}], ids=repr)
def test_a_bad_lines_value_gets_an_error_reply(
    run_master: Callable[..., Master], tmp_path: Path, lines: object
) -> None:
    """`lines` that is not a whole number >= 0 is answered with an error, nothing on stderr."""
    master, ctl = start(run_master, tmp_path, [{"name": "w", **py(WHO)}])
    replies = ask(ctl, {"v": 1, "cmd": "logs", "target": None, "args": {"lines": lines}})
    assert replies[-1]["ok"] is False
    assert "lines" in replies[-1]["error"]
    assert ask(ctl, {"v": 1, "cmd": "ping", "target": None, "args": {}})[0]["ok"] is True
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    assert master.stderr() == ""
