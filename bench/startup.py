"""Start-up overhead: launch of `python -m runtime` to the worker's first output line
(and to the first HTTP 200), minus the same app started bare. Median of 10, target <= 75 ms.

    .venv/bin/python bench/startup.py [--quick] [--runs 10] [--write] [--dev] [--baseline REF]

`--baseline REF` also runs the build of an earlier commit (a release install of
`git archive REF`, bench/out/baseline-SHA), interleaved with this one, so that the two
are compared under the same load.

Every process runs from a release install (`pip install .` into bench/out/release-venv,
as in the Dockerfile) unless `--dev`: the development venv's editable-install finder
adds about 30 ms to every interpreter start, bare or not, and preloads `re` and `enum`.

Cases, each run interleaved with its bare twin so drift hits both alike:

- `python app`: a Python worker (`print("ready", flush=True)` then sleep), from a JSON
  ecosystem. Bare: the same interpreter runs the file directly, its stdout a pipe read
  by this process. The same worker from a YAML ecosystem (PyYAML's import is in the
  figure), a Procfile line and the direct form (`python -m runtime hello.py`).
- `sh app`: `/bin/sh -c 'echo ready; exec sleep 60'` (`interpreter: none`): a C-speed
  worker, so the figure is nearly all master.
- `http app`: tests/apps/http_server.py, cluster mode, `listen: 127.0.0.1:PORT`, one
  instance; time to the first `200` (clients retry a refused connect every 0.5 ms).
  Bare: this process binds the socket, forks, puts it on fd 3, sets LISTEN_PID, execs.

All times run from just before `Popen`/`fork` to the line's arrival on our side of the
pipe (a reader thread stamps each line with CLOCK_MONOTONIC). Then where the time goes:
`python -X importtime` of `-m runtime --version`, of a real master run (every module it
imports before the first worker starts), and each dependency imported alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as c

HTTP_APP = c.ROOT / "tests" / "apps" / "http_server.py"
TARGET_MS = 75.0
# The runtime's modules on the path to the first fork (tests/unit/test_startup_imports.py
# pins what they keep out); the standard-library modules they import are read off a run.
OWN_PRE_FORK = ("runtime.cli.run", "runtime.boot.early", "runtime.boot.relay")


def is_ready_line(text: str) -> bool:
    return "ready" in text


def worker_line(text: str) -> bool:
    return text.startswith("{") and '"stream":"stdout"' in text.replace(" ", "") and "ready" in text


CPU: dict[str, list[float]] = {}
PHASES: list[
    tuple[int, int, int]
] = []  # sh app under runtime: runtime_started, worker_started, line


def time_to_line(
    argv: list[str], pred: Callable[[str], bool], env: dict[str, str], cpu_key: str = ""
) -> int:
    """ns from launch to the first matching line; the launched process's CPU time then
    (user+sys, its own, not its children's) goes to CPU[cpu_key]."""
    proc = c.Proc(argv, env=env)
    try:
        _, t, _ = proc.wait_line(pred, timeout=20)
        if cpu_key:
            with contextlib.suppress(OSError):
                CPU.setdefault(cpu_key, []).append(c.cpu_ns(proc.pid) / 1e9)
        if cpu_key.startswith("master"):
            _, t_rs, _ = proc.wait_line(c.json_pred(event="runtime_started"), timeout=1)
            _, t_ws, _ = proc.wait_line(c.json_pred(event="worker_started"), timeout=1)
            PHASES.append((t_rs - proc.t_launch, t_ws - t_rs, t - t_ws))
        return t - proc.t_launch
    finally:
        proc.stop()


def http_200(port: int, t0: int, timeout: float = 20.0) -> int:
    """Retry connecting until a GET / answers 200; ns since t0."""
    deadline = time.monotonic() + timeout
    req = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    while time.monotonic() < deadline:
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        except OSError:
            time.sleep(0.0005)
            continue
        with s:
            try:
                s.sendall(req)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            except OSError:
                data = b""
        if data.startswith(b"HTTP/1.1 200"):
            return time.monotonic_ns() - t0
        time.sleep(0.0005)
    raise TimeoutError(f"no HTTP 200 on port {port}")


def bare_http(port: int) -> int:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    env = c.runtime_env()
    env.pop("NOTIFY_SOCKET", None)
    env["LISTEN_FDS"] = "1"
    null = os.open(os.devnull, os.O_RDWR)
    t0 = time.monotonic_ns()
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setsid()
            if sock.fileno() != 3:
                os.dup2(sock.fileno(), 3, inheritable=True)
            os.set_inheritable(3, True)
            os.dup2(null, 0)
            os.dup2(null, 1)
            env["LISTEN_PID"] = str(os.getpid())
            os.execve(c.PY, [c.PY, str(HTTP_APP)], env)
        finally:
            os._exit(127)
    sock.close()
    os.close(null)
    try:
        return http_200(port, t0)
    finally:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def master_http(eco: Path, port: int, env: dict[str, str], py: str | None = None) -> int:
    proc = c.Proc(c.runtime_argv(str(eco), "--log-format", "json", py=py), env=env)
    try:
        return http_200(port, proc.t_launch)
    finally:
        proc.stop()


def importtime(
    argv: list[str], env: dict[str, str], until_line: bool = False, repeat: int = 3
) -> list[tuple[str, int, int, int]]:
    """(module, self us, cumulative us, depth) per import; each the min of `repeat` runs."""
    best: dict[str, tuple[str, int, int, int]] = {}
    for _ in range(repeat):
        for r in _importtime(argv, env, until_line):
            old = best.get(r[0])
            best[r[0]] = r if old is None else (r[0], min(old[1], r[1]), min(old[2], r[2]), r[3])
    return list(best.values())


def _importtime(
    argv: list[str], env: dict[str, str], until_line: bool
) -> list[tuple[str, int, int, int]]:
    env = dict(env, PYTHONPROFILEIMPORTTIME="1")
    if until_line:
        proc = c.Proc(argv, env=env)
        try:
            proc.wait_line(worker_line, timeout=20)
        finally:
            proc.stop()
        err = proc.stderr()
    else:
        err = subprocess.run(argv, env=env, capture_output=True, text=True, check=False).stderr
    rows = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if m:
            rows.append((m.group(4), int(m.group(1)), int(m.group(2)), len(m.group(3)) - 1))
    return rows


def wall(argv: list[str], env: dict[str, str], n: int) -> float:
    out = []
    for _ in range(n):
        t = time.monotonic_ns()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )
        out.append(time.monotonic_ns() - t)
    return c.median(out)


def pre_fork_stdlib(env: dict[str, str]) -> list[str]:
    """The public standard-library packages that importing OWN_PRE_FORK brings in, beyond
    what a bare interpreter has already loaded."""
    probe = (
        "import sys; before = set(sys.modules); import " + ", ".join(OWN_PRE_FORK) + "\n"
        "tops = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(' '.join(sorted(t for t in tops & sys.stdlib_module_names "
        "if not t.startswith('_'))))"
    )
    out = subprocess.run([c.PY, "-c", probe], env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def overhead_table(
    results: dict[str, dict[str, list[int]]], baseline: str | None
) -> tuple[list[str], dict[str, float]]:
    """The per-case table (and each case's median overhead), with the previous build's
    overhead beside it when one ran."""
    lines = [
        "| case | bare | under runtime | overhead (median of paired diffs) | target | verdict |"
        + (f" previous build ({baseline}) overhead |" if baseline else ""),
        "| --- | --- | --- | --- | --- | --- |" + (" --- |" if baseline else ""),
    ]
    summary = {}
    previous = {}
    for case, r in results.items():
        diffs = [m - b for m, b in zip(r["master"], r["bare"], strict=True)]
        over = c.median(diffs)
        summary[case] = over
        ok = over / 1e6 <= TARGET_MS
        row = (
            f"| {case} | {c.fmt_ms(c.median(r['bare']))} | {c.fmt_ms(c.median(r['master']))} | "
            f"**{c.fmt_ms(over)}** (min {c.fmt_ms(min(diffs))}, max {c.fmt_ms(max(diffs))}) | "
            f"<= {TARGET_MS:.0f} ms | {c.verdict(ok)} |"
        )
        if baseline:
            pdiffs = [m - b for m, b in zip(r["previous"], r["bare"], strict=True)]
            previous[case] = c.median(pdiffs)
            row += (
                f" {c.fmt_ms(previous[case])} (min {c.fmt_ms(min(pdiffs))}, "
                f"max {c.fmt_ms(max(pdiffs))}) |"
            )
        lines.append(row)
    if baseline:
        lines += [
            "",
            "This build minus the previous one, per case (medians): "
            + ", ".join(f"{k} {(summary[k] - previous[k]) / 1e6:+.1f} ms" for k in summary)
            + ".",
        ]

    return lines, summary


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    c.add_common_args(ap)
    c.add_baseline_arg(ap)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument(
        "--dev",
        action="store_true",
        help="use the development venv (editable install) instead of a release install",
    )
    ns = ap.parse_args()
    runs = 3 if ns.quick else ns.runs
    if not ns.dev:
        c.use_release_install()
    base_py = c.baseline_install(ns.baseline) if ns.baseline else None
    builds = {"master": None, **({"previous": base_py} if base_py else {})}
    d = c.tmpdir("startup")
    env = c.runtime_env()
    hello = d / "hello.py"
    hello.write_text('import time\nprint("ready", flush=True)\ntime.sleep(60)\n')
    sh_args = ["-c", "echo ready; exec sleep 60"]
    eco_py = c.write_eco(d, [{"name": "hello", "script": str(hello)}], "py.json")
    eco_yaml = d / "py.yml"
    eco_yaml.write_text(f"apps:\n  - name: hello\n    script: {hello}\n")
    procfile = d / "Procfile"
    procfile.write_text(f"hello: {c.PY} {hello}\n")
    eco_sh = c.write_eco(
        d, [{"name": "sh", "script": "/bin/sh", "args": sh_args, "interpreter": "none"}], "sh.json"
    )

    # warm the page cache and the bytecode caches once, unmeasured
    time_to_line([c.PY, str(hello)], is_ready_line, env)
    for py in builds.values():
        time_to_line(c.runtime_argv(str(eco_py), "--log-format", "json", py=py), worker_line, env)

    python_cases = {  # the same Python worker, from each way of naming it
        "python app": eco_py,
        "python app, YAML ecosystem": eco_yaml,
        "python app, Procfile": procfile,
        "python app, direct form": hello,
    }
    results: dict[str, dict[str, list[int]]] = {
        k: {"bare": [], **{b: [] for b in builds}} for k in (*python_cases, "sh app", "http app")
    }
    for _ in range(runs):
        for case, target in python_cases.items():
            r = results[case]
            cpu_key = "bare python app" if case == "python app" else ""
            r["bare"].append(time_to_line([c.PY, str(hello)], is_ready_line, env, cpu_key))
            for b, py in builds.items():
                argv = c.runtime_argv(str(target), "--log-format", "json", py=py)
                r[b].append(time_to_line(argv, worker_line, env))
        r = results["sh app"]
        r["bare"].append(time_to_line(["/bin/sh", *sh_args], is_ready_line, env))
        for b, py in builds.items():
            r[b].append(
                time_to_line(
                    c.runtime_argv(str(eco_sh), "--log-format", "json", py=py),
                    worker_line,
                    env,
                    "master (sh app)" if b == "master" else "",
                )
            )
        r = results["http app"]
        port = c.free_port()
        r["bare"].append(bare_http(port))
        for b, py in builds.items():
            port = c.free_port()
            eco_http = c.write_eco(
                d,
                [
                    {
                        "name": "web",
                        "script": str(HTTP_APP),
                        "exec_mode": "cluster",
                        "instances": 1,
                        "listen": [f"127.0.0.1:{port}"],
                    }
                ],
                "http.json",
            )
            r[b].append(master_http(eco_http, port, env, py))

    lines = [
        f"Machine: {c.machine_line()}. Median of {runs} interleaved runs each. "
        + (
            "Development venv (editable install: its finder adds about 30 ms to every "
            "interpreter start, bare or not)."
            if ns.dev
            else "A release install (`pip install .` into bench/out/release-venv), as in "
            "the Dockerfile; every process, bare or not, runs its interpreter."
        ),
        "",
    ]
    table, summary = overhead_table(results, ns.baseline)
    lines += table

    # --- where the time goes -------------------------------------------------------
    n = 3 if ns.quick else 7
    t_pass = wall([c.PY, "-c", "pass"], env, n)
    t_pass_s = wall([c.PY, "-S", "-c", "pass"], env, n)
    t_ver = wall(c.runtime_argv("--version"), env, n)
    cpu_b, cpu_m = (
        c.median(CPU.get("bare python app", [])),
        c.median(CPU.get("master (sh app)", [])),
    )
    lines += [
        "",
        f"CPU time (user+sys, less sensitive to machine load than wall time): the master process "
        f"(schedstat, all threads) up to the sh worker's first line {cpu_m * 1000:.0f} ms, "
        f"against {cpu_b * 1000:.0f} ms for "
        f"the bare Python app up to its first line: the master's own start costs "
        f"{cpu_m / cpu_b:.1f}x a plain interpreter start plus a print.",
    ]
    if PHASES:
        lines += [
            "",
            "Where the wall time goes (sh app under runtime, medians of arrival times here): "
            f"launch -> `runtime_started` {c.fmt_ms(c.median([p[0] for p in PHASES]))} "
            "(interpreter, imports, config), -> `worker_started` "
            f"{c.fmt_ms(c.median([p[1] for p in PHASES]))}, -> the worker's first line "
            f"{c.fmt_ms(c.median([p[2] for p in PHASES]))}.",
        ]
    lines += [
        "",
        f"Interpreter start: `python -c pass` {c.fmt_ms(t_pass)} (`-S`: {c.fmt_ms(t_pass_s)}); "
        f"`python -m runtime --version` {c.fmt_ms(t_ver)} (+{c.fmt_ms(t_ver - t_pass)}).",
        "",
    ]

    rows = importtime(c.runtime_argv(str(eco_py), "--log-format", "json"), env, until_line=True)
    total_self = sum(r[1] for r in rows)
    top = [r for r in rows if r[3] == 0]
    top.sort(key=lambda r: -r[2])
    by_self = sorted(rows, key=lambda r: -r[1])[:8]
    lines.append(
        "Imports in a real master run before the first worker line (`-X importtime`, "
        "min of 3 runs per module): "
        f"{len(rows)} modules, {total_self / 1000:.1f} ms in total. Top-level imports by "
        f"cumulative time: "
        + ", ".join(f"`{m}` {cum / 1000:.1f} ms" for m, _s, cum, _l in top[:8])
        + ". Heaviest single modules (self): "
        + ", ".join(f"`{m}` {s / 1000:.1f} ms" for m, s, _c, _l in by_self)
        + "."
    )
    rows_v = importtime(c.runtime_argv("--version"), env)
    lines.append(
        "`python -X importtime -m runtime --version` (min of 3 per module): "
        f"{sum(r[1] for r in rows_v) / 1000:.1f} ms of "
        f"imports; top: "
        + ", ".join(
            f"`{m}` {cum / 1000:.1f} ms"
            for m, _s, cum, _l in sorted([r for r in rows_v if r[3] == 0], key=lambda r: -r[2])[:5]
        )
        + "."
    )
    dep = []
    for mod in ("json", "socket", "yaml", "psutil", "asyncio"):
        rr = importtime([c.PY, "-c", f"import {mod}"], env)
        mine = [r for r in rr if r[0] == mod]
        dep.append(f"`{mod}` {mine[-1][2] / 1000:.1f} ms" if mine else f"`{mod}` ?")
    lines.append(
        "Each imported alone in a fresh interpreter (cumulative, incl. what it pulls in): "
        + ", ".join(dep)
        + "."
    )
    stdlib = pre_fork_stdlib(env)
    t_std = wall([c.PY, "-c", f"import {', '.join(stdlib)}"], env, n)
    t_own = wall([c.PY, "-c", "import " + ", ".join(OWN_PRE_FORK)], env, n)
    lines.append(
        "Wall time over `python -c pass` (medians of "
        f"{n}): the standard-library modules the path to the first fork uses "
        f"(`{', '.join(stdlib)}`) +{c.fmt_ms(t_std - t_pass)}; the runtime's own "
        f"pre-fork modules, which import them (`{', '.join(OWN_PRE_FORK)}`) "
        f"+{c.fmt_ms(t_own - t_pass)}."
    )
    worst = max(summary.values())
    missed = [k for k, v in summary.items() if v / 1e6 > TARGET_MS]
    verdict = (
        f"**Verdict: {'PASS' if worst / 1e6 <= TARGET_MS else 'MISS'}** "
        f"(target <= {TARGET_MS:.0f} ms): "
        f"overhead {', '.join(f'{k} {c.fmt_ms(v)}' for k, v in summary.items())}."
        + (f" Over the target: {', '.join(missed)}." if missed else "")
    )
    lines = [verdict, "", *lines, "", f"Command: `{c.command_line()}`"]
    body = "\n".join(lines)
    print(body)
    if ns.write:
        c.update_results("Start-up", body)
    return 0 if all(v / 1e6 <= TARGET_MS for v in summary.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
