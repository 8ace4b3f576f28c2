"""Helpers for the HTTP cluster benchmarks (http_cluster.py, reload_under_load.py).

Not a benchmark itself. Installs `wrk` (apt-get) and pm2 (npm, into bench/out/pm2) on
demand, runs a real master (`python -m runtime eco.json --log-format json`) with its JSON
stdout parsed live, runs wrk and parses its report (requests/s, latency percentiles,
socket errors, non-2xx, a Lua tally of response bodies), and accounts the CPU time each
party used during a run (servers, master, load generator) so the 2-core split is visible.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
APPS = BENCH / "apps"
OUT = BENCH / "out"
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
FAST_SERVER = str(APPS / "fast_server.py")
HELLO_JS = str(APPS / "hello.js")
UNMODIFIED_JS = str(APPS / "hello_unmodified.js")  # listen(process.env.PORT), nothing else
PM2_DIR = OUT / "pm2"

# wrk: tally response bodies per thread, print them as `tally <body> <n>` at the end.
TALLY_LUA = """
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) tally = {} end
function response(status, headers, body)
  local k = string.gsub(body, "%s+$", "")
  tally[k] = (tally[k] or 0) + 1
end
function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("tally")) do total[k] = (total[k] or 0) + v end
  end
  for k, v in pairs(total) do io.write(string.format("tally %s %d\\n", k, v)) end
end
"""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- tools -------------------------------------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    log("wrk not found: apt-get install wrk")
    apt = shutil.which("apt-get")
    if apt is None:
        sys.exit("wrk is not installed and apt-get is absent: install wrk by hand")
    if subprocess.run([apt, "install", "-y", "-qq", "wrk"], capture_output=True).returncode:
        subprocess.run([apt, "update", "-qq"], check=False)
        subprocess.run([apt, "install", "-y", "-qq", "wrk"], check=True)
    found = shutil.which("wrk")
    if not found:
        sys.exit("wrk could not be installed")
    return found


def ensure_pm2() -> Path | None:
    """bench/out/pm2/node_modules/.bin (pm2, pm2-runtime), installed with npm; None if no npm/node."""
    bin_dir = PM2_DIR / "node_modules" / ".bin"
    if (bin_dir / "pm2-runtime").exists():
        return bin_dir
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        log("SKIP pm2 comparisons: npm/node are not installed")
        return None
    log(f"installing pm2 with npm into {PM2_DIR}")
    PM2_DIR.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "install", "--prefix", str(PM2_DIR), "--no-audit", "--no-fund", "pm2@latest"],
        capture_output=True,
        text=True,
    )
    if done.returncode or not (bin_dir / "pm2-runtime").exists():
        log(f"SKIP pm2 comparisons: npm install pm2 failed: {done.stderr.strip()[-500:]}")
        return None
    return bin_dir


def node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return ""
    return subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()


def node_has_reuseport() -> bool:
    """`server.listen({reusePort})` arrived in Node 23.1 and 22.12."""
    v = node_version().lstrip("v").split(".")
    if len(v) < 2 or not v[0].isdigit():
        return False
    major, minor = int(v[0]), int(v[1])
    return (major >= 23 and (major > 23 or minor >= 1)) or (major == 22 and minor >= 12)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing served on port {port} within {timeout} s")


def sysctl(name: str) -> str:
    try:
        return Path("/proc/sys/" + name.replace(".", "/")).read_text().strip()
    except OSError:
        return "?"


# --- the runtime master ------------------------------------------------------------


class Master:
    """`python -m runtime eco.json --log-format json` with stdout records kept (each with
    `_t`, the monotonic time it was read).

    `eco` may be a script instead, for the direct form, with `args` such as `-i 2`.
    """

    def __init__(
        self,
        eco: Path | str,
        cwd: Path,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        self.proc = subprocess.Popen(
            [PY, "-m", "runtime", str(eco), *args, "--log-format", "json"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.records: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"unparsed": line.decode(errors="replace")}
            rec["_t"] = time.monotonic()  # when it was read, on this script's clock
            with self._cond:
                self.records.append(rec)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._cond:
            return [r for r in self.records if r.get("event") == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.records if r.get("event") == name]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    tail = "\n".join(json.dumps(r) for r in self.records[-15:])
                    raise RuntimeError(f"no {count}x {name} within {timeout} s; last:\n{tail}")
                self._cond.wait(min(left, 0.5))

    def wait_any(self, names: tuple[str, ...], after: int, timeout: float) -> dict[str, Any] | None:
        """The first record past index `after` whose event is in `names`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self.records[after:]:
                    if r.get("event") in names:
                        return r
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self._cond.wait(min(left, 0.5))

    def mark(self) -> int:
        with self._cond:
            return len(self.records)

    def lines_matching(self, pattern: str) -> list[str]:
        rx = re.compile(pattern)
        out = []
        with self._cond:
            for r in self.records:
                text = r.get("message") or r.get("msg") or r.get("line") or r.get("unparsed") or ""
                if isinstance(text, str) and rx.search(text):
                    out.append(text)
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def cluster_eco(
    path: Path, name: str, script: str, port: int, sharing: str, instances: int = 2, **extra: Any
) -> Path:
    app = {
        "name": name,
        "script": script,
        "exec_mode": "cluster",
        "instances": instances,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "wait_ready": True,
        "listen_timeout": 10000,
        "kill_timeout": 5000,
        **extra,
    }
    path.write_text(json.dumps({"apps": [app]}))
    return path


@contextlib.contextmanager
def runtime_cluster(
    workdir: Path, script: str, port: int, sharing: str, instances: int = 2, **extra: Any
) -> Iterator[Master]:
    eco = cluster_eco(
        workdir / f"eco-{sharing}.json", "web", script, port, sharing, instances, **extra
    )
    m = Master(eco, workdir)
    try:
        m.wait_event("worker_ready", count=instances, timeout=30)
        wait_serving(port)
        yield m
    finally:
        m.stop()


@contextlib.contextmanager
def runtime_direct(
    workdir: Path, script: str, port: int, sharing: str, instances: int = 2
) -> Iterator[Master]:
    """`python -m runtime SCRIPT -i N --socket-sharing MODE` with PORT set: the direct form,
    as `pm2-runtime start SCRIPT -i N` (cluster inferred from -i, listen `:$PORT`)."""
    args = ["-i", str(instances), "--socket-sharing", sharing]
    args += ["--control", str(workdir / "ctl.sock")]  # one per master: same script twice
    m = Master(script, workdir, args, env={"PORT": str(port)})
    try:
        m.wait_event("worker_ready", count=instances, timeout=30)
        wait_serving(port)
        yield m
    finally:
        m.stop()


@contextlib.contextmanager
def pm2_runtime(
    workdir: Path, bin_dir: Path, start_args: Sequence[str], port: int
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    """`pm2-runtime start ARGS` with its own PM2_HOME and PORT, once it serves `port` with
    every worker up; yields the process and the environment for `pm2` verbs against it."""
    env = dict(os.environ, PM2_HOME=str(workdir / "home"), PORT=str(port), HOST="127.0.0.1")
    proc = subprocess.Popen(
        [str(bin_dir / "pm2-runtime"), "start", *start_args],
        env=env,
        cwd=workdir,
        stdout=(workdir / "pm2.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_serving(port, 30)
        deadline = time.monotonic() + 20
        while len(tree(proc.pid)) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
        yield proc, env
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for_quiet(max_load: float | None, timeout_s: float = 600.0) -> float:
    """Poll the 1-minute load average until it is below `max_load` (other jobs share the
    machine), at most `timeout_s`; the load it measured at the end."""
    load = os.getloadavg()[0]
    deadline = time.monotonic() + timeout_s
    while max_load is not None and load >= max_load and time.monotonic() < deadline:
        log(f"load {load:.2f} >= {max_load}: waiting")
        time.sleep(10)
        load = os.getloadavg()[0]
    return load


@contextlib.contextmanager
def bare_processes(argv: list[str], port: int, count: int = 2) -> Iterator[subprocess.Popen[bytes]]:
    """`count` copies of a self-binding (SO_REUSEPORT) server on `port`, in ONE new session.

    One session like the runtime's workers (which share their master's), because with
    `kernel.sched_autogroup_enabled=1` each session is a scheduling group with an equal
    share of a busy machine: two sessions would get twice the CPU of one. The yielded
    process is a `sh` whose children are the servers.
    """
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1")
    for k in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "NOTIFY_SOCKET"):
        env.pop(k, None)
    cmd = " ".join(shlex.quote(a) for a in argv)
    script = "".join(f"INSTANCE={i} {cmd} & " for i in range(count)) + "wait"
    shell = subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)
    try:
        wait_serving(port)
        deadline = time.monotonic() + 10
        while len(tree(shell.pid)) < count + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # let every copy bind
        if shell.poll() is not None:
            raise RuntimeError(f"bare servers exited ({shell.returncode})")
        yield shell
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(shell.pid, signal.SIGTERM)
        try:
            shell.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(shell.pid, signal.SIGKILL)
            shell.wait()


# --- CPU accounting ----------------------------------------------------------------


def tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class CpuSplit:
    """CPU used during a run by named groups of processes, plus everything else on the box.

    Each group is a function returning its current pids (re-listed every 0.5 s, so workers
    that start or exit during a reload are counted up to their last reading). `other` is
    the machine's busy time (from /proc/stat) minus the groups': other engineers' jobs, the
    benchmark script itself, the kernel's softirq work not charged to a process.
    """

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups: dict[str, Any] = dict(groups)
        self.start: dict[str, dict[int, float]] = {}
        self.last: dict[str, dict[int, float]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._t0 = 0.0
        self._busy0 = 0.0
        self.busy = 0.0
        self.wall = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0) - getattr(t, "steal", 0.0)

    def _sample(self) -> None:
        with self._lock:
            for name, pids in self.groups.items():
                first = name not in self.start
                self.start.setdefault(name, {})
                self.last.setdefault(name, {})
                for pid in pids():
                    with contextlib.suppress(psutil.Error):
                        t = psutil.Process(pid).cpu_times()
                        used = t.user + t.system
                        if pid not in self.start[name]:
                            # a process born during the run counts from 0
                            self.start[name][pid] = used if first else 0.0
                        self.last[name][pid] = used

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self._sample()

    def __enter__(self) -> CpuSplit:
        self._sample()
        self._t0 = time.monotonic()
        self._busy0 = self._busy()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self._stop.set()
        self.wall = time.monotonic() - self._t0
        self.busy = self._busy() - self._busy0

    def add(self, name: str, pids: Any) -> None:
        with self._lock:
            self.groups[name] = pids
            self.start[name] = {}
            self.last[name] = {}

    def cores(self) -> dict[str, float]:
        """Average cores used per group over the run, and `other`."""
        out = {}
        for name in self.groups:
            used = sum(v - self.start[name].get(pid, 0.0) for pid, v in self.last[name].items())
            out[name] = used / self.wall if self.wall else 0.0
        out["other"] = max(0.0, self.busy / self.wall - sum(out.values())) if self.wall else 0.0
        return out


def pids_of_tree(root: int, include_root: bool = True) -> Any:
    def pids() -> list[int]:
        procs = tree(root)
        return [p.pid for p in (procs if include_root else procs[1:])]

    return pids


def pids_of(*roots: int) -> Any:
    return lambda: [p.pid for r in roots for p in tree(r)]


def fmt_cores(cores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in cores.items())


# --- wrk ---------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * _UNITS[m.group(2)]


def run_wrk(
    url: str,
    seconds: float,
    threads: int = 1,
    conns: int = 50,
    close: bool = False,
    tally: bool = False,
    timeout_s: int = 2,
    on_start: Any = None,
) -> dict[str, Any]:
    """Run wrk and parse its report. `on_start(proc)` is called once wrk is running."""
    wrk = ensure_wrk()
    argv = [wrk, "-t", str(threads), "-c", str(conns), "-d", f"{int(seconds)}s", "--latency"]
    argv += ["--timeout", f"{timeout_s}s"]
    if close:
        argv += ["-H", "Connection: close"]
    script_path = None
    if tally:
        OUT.mkdir(parents=True, exist_ok=True)
        script_path = OUT / "tally.lua"
        script_path.write_text(TALLY_LUA)
        argv += ["-s", str(script_path)]
    argv.append(url)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if on_start is not None:
        on_start(proc)
    out, _ = proc.communicate(timeout=seconds + 60)
    res = parse_wrk(out)
    res["argv"] = " ".join(["wrk", *argv[1:]])
    return res


def parse_wrk(out: str) -> dict[str, Any]:
    res: dict[str, Any] = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_ms"] = _ms(m.group(1)) if m else float("nan")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errs = [int(x) for x in m.groups()] if m else [0, 0, 0, 0]
    res["errors"] = dict(zip(("connect", "read", "write", "timeout"), errs, strict=True))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    res["tally"] = {k: int(v) for k, v in re.findall(r"^tally (\S+) (\d+)$", out, re.M)}
    return res


def spread(tally: dict[str, int], workers: int = 2) -> float:
    """max/min requests per worker, `workers` expected (inf when one got none)."""
    counts = list(tally.values()) + [0] * max(0, workers - len(tally))
    if not any(counts):
        return float("nan")
    lo, hi = min(counts), max(counts)
    return hi / lo if lo else float("inf")
