"""`--log-format pretty` from a real master: every prefix aligned, before and after `scale`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.integration.conftest import ROOT, write_ecosystem
from tests.integration.test_control import cli

WAIT_S = 20.0
# A shell worker that says which instance it is, then sleeps (cheap to run a dozen of).
SAY_UP = {
    "script": "/bin/sh",
    "args": ["-c", 'echo "up $RUNTIME_INSTANCE"; echo "err $RUNTIME_INSTANCE" >&2; exec sleep 600'],
    "interpreter": "none",
}
PREFIX = re.compile(r"^(\S+)( +)([|!]) ")


class PrettyMaster:
    """`python -m runtime FILE --log-format pretty`, its stdout lines kept as text."""

    def __init__(self, eco: Path, ctl: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
        env["PYTHONPATH"] = str(ROOT)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime",
                str(eco),
                "--control",
                str(ctl),
                "--log-format",
                "pretty",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._lock:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def wait_for(self, *needles: str) -> list[str]:
        """Every line so far, once each needle is in some line; fails after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            with self._lock:
                lines = list(self.lines)
            if all(any(n in line for line in lines) for n in needles):
                return lines
            time.sleep(0.05)
        raise AssertionError(f"no line with one of {needles} in:\n" + "\n".join(self.lines))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def bar_columns(lines: list[str]) -> set[int]:
    """The column of the `|` or `!` after each line's prefix."""
    found = set()
    for line in lines:
        match = PREFIX.match(line)
        assert match is not None, f"not a pretty line: {line!r}"
        found.add(match.start(3))
    return found


def test_pretty_prefixes_align_across_apps_and_after_scale(tmp_path: Path) -> None:
    """Two apps of different name lengths and the master's events share one `|` column
    from the first line; after `scale` past ten instances the new, wider one is used."""
    apps = [{"name": "app-one", "instances": 2, **SAY_UP}, {"name": "b", **SAY_UP}]
    ctl = tmp_path / "ctl.sock"
    master = PrettyMaster(write_ecosystem(tmp_path / "eco.json", apps), ctl)
    try:
        first = master.wait_for(
            "app-one#0 ", "app-one#1 ", "b#0 ", "worker_ready b#0", "worker_ready app-one#1"
        )
        assert any(line.startswith("b#0       | up 0") for line in first), first
        assert any(line.startswith("b#0       ! err 0") for line in first), first
        assert any(line.startswith("runtime   | runtime_started") for line in first), first
        assert bar_columns(first) == {len("app-one#1") + 1}
        cli(ctl, "scale", "app-one", "11")
        after = master.wait_for("app-one#10 | up 10", "scaled")
        widened = after[next(i for i, x in enumerate(after) if "app-one#2" in x) :]
        assert bar_columns(widened) == {len("app-one#10") + 1}
        assert bar_columns(after[: len(first)]) == {len("app-one#1") + 1}
    finally:
        master.stop()
    assert master.proc.returncode == 0
