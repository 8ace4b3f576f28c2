"""Shared helpers for the start-up, idle, respawn and memory-limit benchmarks.

Not a benchmark itself. Every benchmark measures the master against a baseline taken
in the same run (the machine is noisy), prints the figures, and with `--write` puts a
markdown block into its own section of bench/RESULTS.md (re-read right before the
edit, only that section replaced).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS.md"
_VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(_VENV_PY) if _VENV_PY.exists() else sys.executable
RELEASE_VENV = ROOT / "bench" / "out" / "release-venv"
_release = False
_SCRIPT = os.path.abspath(sys.argv[0])  # before any chdir (see `_leave_source_tree`)


def _leave_source_tree() -> None:
    """`python -m runtime` puts the working directory first on sys.path: started from the
    repository's root, every install would run the source tree's `runtime/` instead of
    its own. The processes of an install's run start from the temporary directory."""
    os.chdir(tempfile.gettempdir())


def _installed_venv(venv: Path, source: Path) -> Path:
    """The interpreter of `venv`, with `source` and its dependencies installed in it.

    Built once: a marker written after pip succeeds says so, so a venv that a failed or
    interrupted install left half-built is built again instead of being measured."""
    py = venv / "bin" / "python"
    marker = venv / ".bench-installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", str(source)], check=True)
        marker.write_text(f"{source}\n")
    return py


def use_release_install() -> str:
    """Run every process of this benchmark from a regular (non-editable) install.

    The development venv's editable install adds a finder to every interpreter start
    (`__editable__...pth`, which imports pathlib, re and urllib): about 30 ms that a
    `pip install .` in a Dockerfile or on Heroku does not have. `bench/out/release-venv`
    is created once (with the dependencies) and gets this tree re-installed on each run.
    """
    global PY, _release
    fresh = not (RELEASE_VENV / ".bench-installed").exists()
    py = _installed_venv(RELEASE_VENV, ROOT)
    if not fresh:
        subprocess.run(
            [str(py), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(ROOT)],
            check=True,
        )
    PY, _release = str(py), True
    _leave_source_tree()
    return PY


def baseline_install(ref: str) -> str:
    """A release install of an earlier commit, for a run of this tree beside it.

    `git archive REF` is unpacked into bench/out/baseline-SHA/src and installed (with its
    own dependencies) into bench/out/baseline-SHA/venv once; the venv's interpreter is
    returned. Both builds then run in the same benchmark, interleaved, so that the
    machine's noise hits them alike.
    """
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=10", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    base = ROOT / "bench" / "out" / f"baseline-{sha}"
    src = base / "src"
    if not src.exists():  # unpacked beside it, then renamed: never half there
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", sha], check=True, capture_output=True
        ).stdout
        base.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix="src-", dir=base.parent))
        subprocess.run(["tar", "-x", "-C", str(partial)], input=archive, check=True)
        base.mkdir(exist_ok=True)
        os.replace(partial, src)
    py = _installed_venv(base / "venv", src)
    _leave_source_tree()
    return str(py)


def runtime_argv(*args: str, py: str | None = None) -> list[str]:
    """`python -m runtime ARGS` with the project's interpreter (or another build's)."""
    return [py or PY, "-m", "runtime", *args]


def runtime_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    if _release:  # the installed copy, not the source tree
        env.pop("PYTHONPATH", None)
    else:
        env["PYTHONPATH"] = str(ROOT)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(extra or {})
    return env


def tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))


def write_eco(directory: Path, apps: list[dict[str, Any]], name: str = "eco.json") -> Path:
    path = directory / name
    path.write_text(json.dumps({"apps": apps}))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- a child process whose stdout lines are time-stamped on arrival -----------------


class Proc:
    """Popen with a reader thread: every stdout line is kept as (monotonic_ns, text)."""

    def __init__(
        self, argv: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None
    ) -> None:
        self.lines: list[tuple[int, str]] = []
        self._cond = threading.Condition()
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process
        self.t_launch = time.monotonic_ns()
        self.popen = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self.pid = self.popen.pid
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            now = time.monotonic_ns()
            with self._cond:
                self.lines.append((now, raw.decode(errors="replace").rstrip("\n")))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(
        self, pred: Callable[[str], bool], timeout: float = 20.0, start: int = 0
    ) -> tuple[int, int, str]:
        """First line at index >= start matching pred: (index, arrival ns, text)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    t, text = self.lines[i]
                    if pred(text):
                        return i, t, text
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._thread.is_alive()):
                    raise TimeoutError(f"no matching line; stderr: {self.stderr()[-2000:]}")
                self._cond.wait(min(left, 0.5))

    def events(self) -> list[tuple[int, dict[str, Any]]]:
        """Every JSON line so far, parsed, with its arrival time."""
        out = []
        with self._cond:
            lines = list(self.lines)
        for t, text in lines:
            if text.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append((t, json.loads(text)))
        return out

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 8.0) -> int | None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, sig)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        # a bare baseline's group (the master's own workers die with it)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self._thread.join(2)
        return self.popen.returncode


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of pid so far, in ns (/proc/PID/task/*/schedstat, not ticks)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass
    return total


def json_pred(**want: Any) -> Callable[[str], bool]:
    """A line predicate: a JSON record holding every key=value in `want`."""

    def pred(text: str) -> bool:
        if not text.startswith("{"):
            return False
        try:
            rec = json.loads(text)
        except ValueError:
            return False
        return all(rec.get(k) == v for k, v in want.items())

    return pred


def iso_ms_to_ns(stamp: str) -> int:
    """The master's UTC timestamp `2026-11-28T22:47:29.123Z` as realtime ns."""
    from datetime import datetime

    dt = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000) * 1_000_000


# --- statistics and output -------------------------------------------------------


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(p / 100 * (len(s) - 1))))
    return s[k]


def fmt_ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**MISS**"


def command_line() -> str:
    """The command that produced this run, as a user would type it from the repo root."""
    script = os.path.relpath(_SCRIPT, ROOT)
    args = [a for a in sys.argv[1:] if a != "--write"]
    return " ".join([".venv/bin/python", shlex.quote(script), *map(shlex.quote, args)])


def machine_line() -> str:
    import platform

    cpus = os.cpu_count()
    try:
        load = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load = "?"
    return (
        f"Python {platform.python_version()}, Linux {platform.release()}, "
        f"{cpus} CPUs, load {load}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


MARKER = "<!-- end of generated figures; hand-written text below is kept on --write -->"


def update_results(title: str, body: str) -> None:
    """Replace (or append) the `## title` section of bench/RESULTS.md, re-read right before.

    Only the generated part is replaced: text after MARKER inside the section (a reading
    written by hand) is kept.
    """
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    head = f"## {title}"
    lines = text.split("\n")
    start = next((i for i, line in enumerate(lines) if line.strip() == head), None)
    kept = ""
    if start is None:
        before, after = lines, []
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        section = lines[start:end]
        if MARKER in section:
            kept = "\n".join(section[section.index(MARKER) + 1 :]).strip("\n")
        before, after = lines[:start], lines[end:]
    block = f"{head}\n\n{body.strip()}\n\n{MARKER}\n" + (f"\n{kept}\n" if kept else "")
    text = "\n".join(before).rstrip("\n") + "\n\n" + block
    if after:
        text += "\n" + "\n".join(after)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text(text.rstrip("\n") + "\n")
    os.replace(tmp, RESULTS)


def add_common_args(parser: Any) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer samples, for a smoke run")
    parser.add_argument(
        "--write",
        action="store_true",
        help="write the figures into this benchmark's section of RESULTS.md",
    )


def add_baseline_arg(parser: Any) -> None:
    parser.add_argument(
        "--baseline",
        metavar="REF",
        help="also run the build of git commit REF (a release install), interleaved",
    )
