"""A real master under test: `python -m runtime` as a child, its JSON stdout parsed live."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
Record = dict[str, Any]
NPM_PACKAGES = ("express", "koa", "fastify")
NPM_TIMEOUT_S = 45.0  # inside pytest-timeout's 60 s, which counts the fixture's set-up


class Master:
    """One running `python -m runtime`, with every stdout line kept as a parsed record."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(ROOT)
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", *args, "--log-format", "json"],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.records: list[Record] = []
        self.raw: list[bytes] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.raw.append(line)
                try:
                    self.records.append(json.loads(line))
                except ValueError:
                    self.records.append({"unparsed": line.decode(errors="replace")})
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def events(self, name: str, **match: Any) -> list[Record]:
        with self._cond:
            return [
                r
                for r in self.records
                if r.get("event") == name and all(r.get(k) == v for k, v in match.items())
            ]

    def lines(self, app: str | None = None) -> list[Record]:
        with self._cond:
            return [
                r for r in self.records if "event" not in r and (app is None or r.get("app") == app)
            ]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
        """Wait until `predicate()` is truthy; fail with the recent log after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = "\n".join(json.dumps(r) for r in self.records[-30:])
                    pytest.fail(
                        f"timed out after {timeout}s waiting for {what or predicate}\n{tail}"
                    )
                self._cond.wait(min(remaining, 0.05))

    def wait_event(
        self, name: str, count: int = 1, timeout: float = 20.0, **match: Any
    ) -> list[Record]:
        return self.wait_for(  # type: ignore[no-any-return]
            lambda: (found := self.events(name, **match)) and len(found) >= count and found,
            timeout,
            f"{count} x {name} {match}",
        )

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        return code

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def run_master(tmp_path: Path) -> Iterator[Callable[..., Master]]:
    """Start masters in `tmp_path`; each is stopped (TERM, then KILL) at the end of the test."""
    started: list[Master] = []

    def start(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Master:
        master = Master(list(args), cwd or tmp_path, env)
        started.append(master)
        return master

    yield start
    for master in started:
        master.stop()


def write_ecosystem(path: Path, apps: list[dict[str, Any]]) -> Path:
    """Write an ecosystem as JSON (a YAML subset the loader reads too)."""
    path.write_text(json.dumps({"apps": apps}, indent=2))
    return path


def py(code: str) -> dict[str, Any]:
    """An app entry that runs `python -c code`."""
    return {"script": sys.executable, "args": ["-c", code], "interpreter": "none"}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


# Test ports come from a block of their own per xdist worker, below the kernel's
# ephemeral range (32768 up by default). A port drawn there by bind(0) can be
# drawn again by a parallel test before the first one's runtime has bound it,
# and the second runtime then exits 78 (address already in use).
PORT_BLOCK_FIRST = 20000
PORT_BLOCK_SIZE = 1000
PORT_BLOCKS = 12  # 20000-31999
_port_draws = itertools.count()


def free_port() -> int:
    """A loopback port that no other test of this run is handed, checked free by a bind."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    index = int(worker) if worker.isdigit() else 0
    block = PORT_BLOCK_FIRST + index % PORT_BLOCKS * PORT_BLOCK_SIZE
    for _ in range(PORT_BLOCK_SIZE):
        port = block + next(_port_draws) % PORT_BLOCK_SIZE
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {block}-{block + PORT_BLOCK_SIZE - 1}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="session")
def node() -> str:
    """The `node` executable, version 18 or later (skip without it)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("`node` is not on PATH")
    major = subprocess.run(
        [path, "-p", "process.versions.node.split('.')[0]"],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    if int(major or 0) < 18:
        pytest.skip(f"node {major.strip()} is older than 18")
    return path


@pytest.fixture(scope="session")
def npm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with express, koa and fastify installed from the registry (skip if offline)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("`npm` is not on PATH")
    where = tmp_path_factory.mktemp("npm")
    (where / "package.json").write_text('{"private": true}\n')
    try:
        done = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--fetch-retries=1",
                "--fetch-timeout=15000",
                *NPM_PACKAGES,
            ],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm install did not finish in {NPM_TIMEOUT_S:.0f} s (registry unreachable?)")
    if done.returncode != 0:
        pytest.skip(f"npm cannot install {', '.join(NPM_PACKAGES)}: {done.stderr.strip()[-300:]}")
    return where
