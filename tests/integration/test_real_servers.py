"""Real servers (asyncio, gunicorn, uvicorn, hypercorn, aiohttp, Node, Go) on the runtime's shared port.

Each server is started by the runtime in cluster mode with 2 instances and takes the
pre-bound listener on fd 3 its own documented way (docs/servers.md); the test sends real
HTTP requests through that one port. Every app answers `<instance> <pid> <ppid> <kind>`,
so the test knows which runtime worker served each request.

gunicorn and uvicorn are in the `test` extra: missing, they skip locally but fail when
`CI` is set. hypercorn, aiohttp, node and go are optional: missing, they skip.
"""

from __future__ import annotations

import http.client
import importlib.metadata
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, Master, free_port, pid_alive, wait_until

SERVERS = ROOT / "tests" / "apps" / "servers"
REQUIRED = {"gunicorn", "uvicorn"}  # in the test extra: CI must run them

# a loaded 2-core CI machine can take several seconds to import a server
READY_TIMEOUT = 60.0
SPREAD_DEADLINE = 45.0
RELOAD_TIMEOUT = 90.0
REQUEST_TIMEOUT = 20.0


def _need_module(name: str) -> None:
    if importlib.util.find_spec(name) is not None:
        return
    if name in REQUIRED and os.environ.get("CI"):
        pytest.fail(f"{name} is in the test extra but not installed: pip install -e '.[test]'")
    pytest.skip(f"{name} is not installed (pip install {name})")


def _need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"`{name}` is not on PATH")
    return path


def _gunicorn_args() -> list[str]:
    args = ["-m", "gunicorn", "-w", "1", "--graceful-timeout", "10", "--chdir", str(SERVERS)]
    version = importlib.metadata.version("gunicorn")
    if tuple(int(p) for p in version.split(".")[:2] if p.isdigit()) >= (25, 1):
        # gunicorn >= 25.1 opens a control socket at one fixed path per user ($XDG_RUNTIME_DIR
        # or ~/.gunicorn/gunicorn.ctl): two instances would fight over it
        args.append("--no-control-socket")
    return [*args, "wsgi_app:app"]


def _go_binary(tmp_path: Path) -> str:
    """Build tests/apps/servers/go in a temporary copy (needs the module proxy for go-systemd)."""
    go = _need_tool("go")
    src = tmp_path / "go-src"
    shutil.copytree(SERVERS / "go", src)
    env = {**os.environ, "GOFLAGS": "-mod=mod"}
    tidy = subprocess.run(
        [go, "mod", "tidy"], cwd=src, env=env, capture_output=True, text=True, timeout=300
    )
    if tidy.returncode != 0:
        pytest.skip(f"cannot fetch go-systemd (offline?): {tidy.stderr.strip()[-300:]}")
    binary = tmp_path / "go-server"
    build = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    return str(binary)


def _asyncio(tmp_path: Path) -> dict[str, Any]:
    return {"script": str(SERVERS / "asyncio_app.py"), "wait_ready": True}


def _gunicorn(tmp_path: Path) -> dict[str, Any]:
    _need_module("gunicorn")
    # gunicorn sends READY=1 itself once its arbiter holds the listener
    args = _gunicorn_args()
    return {"script": sys.executable, "interpreter": "none", "args": args, "wait_ready": True}


def _uvicorn(tmp_path: Path) -> dict[str, Any]:
    _need_module("uvicorn")
    args = ["-m", "uvicorn", "--fd", "3", "--app-dir", str(SERVERS), "--no-access-log"]
    return {"script": sys.executable, "interpreter": "none", "args": [*args, "asgi_app:app"]}


def _hypercorn(tmp_path: Path) -> dict[str, Any]:
    _need_module("hypercorn")
    args = ["-m", "hypercorn", "--bind", "fd://3", f"{SERVERS / 'asgi_app.py'}:app"]
    return {"script": sys.executable, "interpreter": "none", "args": args}


def _aiohttp(tmp_path: Path) -> dict[str, Any]:
    _need_module("aiohttp")
    return {"script": str(SERVERS / "aiohttp_app.py")}


def _node(tmp_path: Path) -> dict[str, Any]:
    _need_tool("node")
    return {"script": str(SERVERS / "node_server.js")}


def _go(tmp_path: Path) -> dict[str, Any]:
    return {"script": _go_binary(tmp_path), "interpreter": "none", "wait_ready": True}


# servers whose own graceful stop resets a connection accepted but not yet read
RESETS_ON_STOP = {"uvicorn"}

APPS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "asyncio": _asyncio,
    "gunicorn": _gunicorn,
    "uvicorn": _uvicorn,
    "hypercorn": _hypercorn,
    "aiohttp": _aiohttp,
    "node": _node,
    "go": _go,
}


def start(run_master: Callable[..., Master], tmp_path: Path, server: str, sharing: str) -> Any:
    """Run `server` with 2 instances on one fresh port; return (master, port, ready pids)."""
    port = free_port()
    app = {
        "name": server,
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "listen_timeout": int(READY_TIMEOUT * 1000),
        "kill_timeout": 15000,
        # servers without READY=1 count as ready after min_uptime alive; connections
        # made before they accept wait in the master's backlog
        "min_uptime": 1500,
        **APPS[server](tmp_path),
    }
    eco = tmp_path / "eco.json"
    eco.write_text(json.dumps({"apps": [app]}))
    master = run_master(str(eco))
    ready = master.wait_event("worker_ready", count=2, timeout=READY_TIMEOUT)
    return master, port, {r["pid"] for r in ready}


def get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise http.client.HTTPException(f"status {resp.status}: {body[:100]!r}")
        return body
    finally:
        conn.close()


@dataclass(frozen=True)
class Answer:
    instance: str
    pid: int
    ppid: int
    kind: str

    @classmethod
    def parse(cls, body: str) -> Answer:
        instance, pid, ppid, kind = body.split()
        return cls(instance, int(pid), int(ppid), kind)

    def worker(self, runtime_pids: set[int]) -> int:
        """The runtime worker that served: the process itself, or its parent (gunicorn's worker)."""
        return self.pid if self.pid in runtime_pids else self.ppid


@dataclass
class Load:
    """`threads` clients sending `Connection: close` requests until stopped or out of budget."""

    port: int
    threads: int = 4
    budget: int = 20_000
    answers: Counter[Answer] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        self._workers = [
            threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)
        ]
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(REQUEST_TIMEOUT + 5)

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(self.answers.values())

    def snapshot(self) -> Counter[Answer]:
        with self._lock:
            return self.answers.copy()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self.budget <= 0:
                    return
                self.budget -= 1
            try:
                answer = Answer.parse(get(self.port))
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                continue
            with self._lock:
                self.answers[answer] += 1


def served_by(answers: Counter[Answer], runtime_pids: set[int]) -> Counter[int]:
    counts: Counter[int] = Counter()
    for answer, n in answers.items():
        counts[answer.worker(runtime_pids)] += n
    return counts


@pytest.mark.timeout(240)
@pytest.mark.parametrize("server", list(APPS))
def test_both_instances_serve_one_port(tmp_path: Path, run_master, server: str) -> None:
    """Two instances of a real server share one port and requests reach both runtime workers."""
    master, port, pids = start(run_master, tmp_path, server, sharing="reuseport")
    with Load(port, threads=4, budget=5000) as load:
        wait_until(
            lambda: (
                load.failures or (load.ok >= 40 and set(served_by(load.snapshot(), pids)) >= pids)
            ),
            SPREAD_DEADLINE,
            f"requests from both workers {pids}",
        )
    assert load.failures == []
    assert set(served_by(load.answers, pids)) == pids, load.answers
    assert {a.instance for a in load.answers} == {"0", "1"}
    assert {a.kind for a in load.answers} == {
        {"uvicorn": "asgi", "hypercorn": "asgi"}.get(server, server)
    }
    assert not master.events("worker_exited")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("server", "sharing"),
    [
        ("asyncio", "shared"),
        ("gunicorn", "shared"),
        ("uvicorn", "shared"),
        ("node", "shared"),
        # reuseport (the default) steers away from the old worker and waits for its queue
        # to empty before its SIGTERM: even uvicorn's stop resets nothing then
        ("uvicorn", "reuseport"),
    ],
)
def test_rolling_reload_fails_no_request(
    tmp_path: Path, run_master, server: str, sharing: str
) -> None:
    """A SIGHUP rolling reload under continuous requests fails none and swaps both workers."""
    master, port, old = start(run_master, tmp_path, server, sharing=sharing)
    with Load(port, threads=4) as load:
        wait_until(lambda: load.failures or load.ok >= 20, SPREAD_DEADLINE, "20 answers")
        master.signal(signal.SIGHUP)
        master.wait_event("reload_done", timeout=RELOAD_TIMEOUT)
        # the replacements, by worker_started (no crash restarts here, so exactly 2)
        new = {r["pid"] for r in master.events("worker_started")} - old
        assert len(new) == 2, master.events("worker_started")
        before = load.snapshot()
        wait_until(
            lambda: load.failures or set(served_by(load.snapshot() - before, new)) >= new,
            SPREAD_DEADLINE,
            f"answers from both new workers {new}",
        )
    if server in RESETS_ON_STOP and sharing == "shared":
        # uvicorn closes the connections it accepted but has not read yet when SIGTERM
        # comes (Kludex/uvicorn#2757): a few resets, never anything else
        assert all("ConnectionReset" in f or "RemoteDisconnected" in f for f in load.failures)
        assert len(load.failures) <= max(3, load.ok // 50), load.failures[:5]
    else:
        assert load.failures == [], load.failures[:5]
    assert not master.events("reload_failed")
    master.wait_for(
        lambda: {r["pid"] for r in master.events("worker_exited")} >= old,
        timeout=30,
        what=f"old workers {old} exited",
    )
    assert not any(pid_alive(p) for p in old)
    exits = {r["pid"]: r for r in master.events("worker_exited")}
    # a graceful stop: the server handled SIGTERM itself, no SIGKILL was needed
    assert all(exits[p]["signal"] != "SIGKILL" for p in old), [exits[p] for p in old]
    assert served_by(load.answers, old | new).keys() <= old | new


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param("exec ", id="exec-prefixed"),
        pytest.param("", id="plain"),
    ],
)
def test_command_line_app_is_the_listen_pid(tmp_path: Path, run_master, prefix: str) -> None:
    """A Procfile-style command line gets LISTEN_PID equal to the server's own pid."""
    code = "import os; print('match' if os.environ.get('LISTEN_PID') == str(os.getpid()) else 'mismatch', flush=True)"
    app = {
        "name": "cmd",
        "script": f'{prefix}{sys.executable} -c "{code}"',
        "exec_mode": "cluster",
        "listen": [f"127.0.0.1:{free_port()}"],
        "autorestart": False,
    }
    eco = tmp_path / "eco.json"
    eco.write_text(json.dumps({"apps": [app]}))
    master = run_master(str(eco))
    line = master.wait_for(
        lambda: [r["message"] for r in master.lines("cmd") if r.get("message")],
        timeout=READY_TIMEOUT,
        what="the app's line",
    )
    assert line == ["match"]
