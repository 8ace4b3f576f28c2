"""Container and platform behaviour without Docker, and the deploy files read as data.

The runtime runs as PID 1 of a new PID namespace (`unshare --pid --fork --mount-proc`,
root only), which is what a container's CMD is: `docker stop` signals PID 1 alone,
Heroku signals every process of the dyno at once, and orphans are PID 1's to reap.
The Dockerfile and the Kubernetes manifests are parsed and checked against the
ecosystem they run (probes, grace period, user, signals).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import yaml

from tests.integration.conftest import ROOT, Master, free_port, py, write_ecosystem

EXAMPLE = ROOT / "examples" / "heroku-app"
KUBE = ROOT / "examples" / "kubernetes"
READY_TIMEOUT = 30.0
DEFAULT_KILL_TIMEOUT_MS = 5000  # the runtime's kill_timeout when an app does not set it

F = TypeVar("F", bound=Callable[..., None])


def needs_namespaces(test: F) -> F:
    """Marks for a test that starts PID namespaces: slow, root, skipped without either."""
    for mark in (
        pytest.mark.slow,
        pytest.mark.root,
        pytest.mark.skipif(os.geteuid() != 0, reason="PID namespaces need root"),
        pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) missing"),
    ):
        test = mark(test)
    return test


class NamespaceMaster(Master):
    """`python -m runtime` as PID 1 of a fresh PID namespace, its JSON log parsed live."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
        command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        self.proc = subprocess.Popen(
            [*command, sys.executable, "-m", "runtime", *args, "--log-format", "json"],
            cwd=cwd,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self.records: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def init_pid(self, timeout: float = 10.0) -> int:
        """The host pid of the namespace's PID 1 (unshare's only child)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            children = psutil.Process(self.proc.pid).children()
            if children:
                return children[0].pid
            time.sleep(0.02)
        pytest.fail("unshare started no child")

    def namespace_pids(self) -> list[int]:
        """Host pids of every process in the namespace, PID 1 first."""
        init = self.init_pid()
        try:
            return [init, *(p.pid for p in psutil.Process(init).children(recursive=True))]
        except psutil.NoSuchProcess:
            return []

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.init_pid(1.0), signal.SIGKILL)  # the namespace dies with it
            except (OSError, pytest.fail.Exception):
                self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        super().stop()


@pytest.fixture
def run_in_namespace(tmp_path: Path) -> Iterator[Callable[..., NamespaceMaster]]:
    """Start runtimes as PID 1 of new PID namespaces; each is killed at the end."""
    started: list[NamespaceMaster] = []

    def start(*args: str, cwd: Path, env: dict[str, str] | None = None) -> NamespaceMaster:
        master = NamespaceMaster([*args, "--control", str(tmp_path / "ctl.sock")], cwd, env or {})
        started.append(master)
        return master

    yield start
    for master in started:
        master.stop()


def start_example(run_in_namespace: Callable[..., NamespaceMaster]) -> NamespaceMaster:
    """The example ecosystem as PID 1 with two web instances, every worker ready."""
    env = {"PORT": str(free_port()), "WEB_CONCURRENCY": "2"}
    master = run_in_namespace("ecosystem.config.yml", cwd=EXAMPLE, env=env)
    master.wait_event("worker_ready", count=2, app="web", timeout=READY_TIMEOUT)
    master.wait_event("worker_ready", app="worker", timeout=READY_TIMEOUT)
    (started,) = master.events("runtime_started")
    assert started["pid"] == 1, "the runtime must be PID 1 of the namespace"
    return master


def example_kill_timeout_s() -> float:
    """The longest kill_timeout of the example's apps, in seconds (apps stop in parallel)."""
    eco = yaml.safe_load((EXAMPLE / "ecosystem.config.yml").read_text())
    return max(app.get("kill_timeout", DEFAULT_KILL_TIMEOUT_MS) for app in eco["apps"]) / 1000


def assert_clean_stop(master: NamespaceMaster, pids: list[int], started_at: float) -> None:
    """Exit 0 within kill_timeout, every worker exited 0, none restarted, no process left."""
    code = master.wait_exit(example_kill_timeout_s() + 5)
    elapsed = time.monotonic() - started_at
    assert code == 0, master.stderr()
    assert elapsed < example_kill_timeout_s(), f"stop took {elapsed:.1f}s"
    assert [r["code"] for r in master.events("runtime_exited")] == [0]
    exits = master.events("worker_exited")
    assert sorted((r["app"], r["instance"]) for r in exits) == [
        ("web", 0),
        ("web", 1),
        ("worker", 0),
    ]
    assert all(r["code"] == 0 and r["signal"] is None for r in exits), [
        (r["app"], r["instance"], r["code"], r["signal"], r.get("uptime_s")) for r in exits
    ]
    assert not master.events("restart_scheduled")
    assert not master.events("worker_started", restarts=1)
    assert not [pid for pid in pids if psutil.pid_exists(pid)]


@needs_namespaces
def test_docker_stop_signals_pid1_only(
    run_in_namespace: Callable[..., NamespaceMaster],
) -> None:
    """SIGTERM to PID 1 alone (docker stop) stops every worker and exits 0 within kill_timeout."""
    master = start_example(run_in_namespace)
    pids = master.namespace_pids()
    assert len(pids) == 4  # the runtime, two web workers, the worker
    started_at = time.monotonic()
    os.kill(pids[0], signal.SIGTERM)
    assert_clean_stop(master, pids, started_at)


@needs_namespaces
def test_heroku_stop_signals_every_process(
    run_in_namespace: Callable[..., NamespaceMaster],
) -> None:
    """SIGTERM to every process at once (Heroku), workers first: exit 0 and nothing restarted."""
    master = start_example(run_in_namespace)
    pids = master.namespace_pids()
    assert len(pids) == 4
    started_at = time.monotonic()
    for pid in [*pids[1:], pids[0]]:  # the workers hear it first: the worst order
        os.kill(pid, signal.SIGTERM)
    assert_clean_stop(master, pids, started_at)


ORPHAN_MAKER = """
import subprocess, sys, time
# sh starts a sleep in the background and exits: the sleep is orphaned
subprocess.run(["sh", "-c", "sleep 1.789 & echo orphan $!"], check=True)
print("parent exited", flush=True)
time.sleep(60)
"""


@needs_namespaces
def test_orphaned_grandchild_is_reaped_by_pid1(
    run_in_namespace: Callable[..., NamespaceMaster], tmp_path: Path
) -> None:
    """A grandchild orphaned by its parent is re-parented to the runtime (PID 1) and reaped."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "orphans", **py(ORPHAN_MAKER)}])
    master = run_in_namespace(str(eco), cwd=tmp_path)
    master.wait_for(
        lambda: any(r.get("message") == "parent exited" for r in master.lines("orphans")),
        what="the orphan's parent to exit",
    )
    init = master.init_pid()
    orphans = [
        p
        for p in psutil.Process(init).children(recursive=True)
        if p.cmdline()[:2] == ["sleep", "1.789"]
    ]
    assert len(orphans) == 1
    orphan = orphans[0]
    assert orphan.ppid() == init, "the orphan is re-parented to PID 1"
    deadline = time.monotonic() + 10
    while Path(f"/proc/{orphan.pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{orphan.pid}").exists(), "the orphan was left a zombie"
    assert master.proc.poll() is None
    assert not master.events("worker_exited")  # a stranger's exit is not a worker's


# ----- the deploy files, parsed -----------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the root Dockerfile, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for text in logical:
        word, _, rest = text.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def web_port(argv: list[str]) -> tuple[str, int]:
    """The (host, port) of `--web [HOST:]PORT` in a runtime command line."""
    value = argv[argv.index("--web") + 1]
    host, _, port = value.rpartition(":")
    return host or "127.0.0.1", int(port)


def test_dockerfile_runs_the_runtime_as_pid1_safely() -> None:
    """The Dockerfile: overridable base, non-root USER, exec-form CMD, HEALTHCHECK, STOPSIGNAL."""
    instructions = dockerfile_instructions()
    words = [word for word, _ in instructions]
    args = dict(instructions)  # the last of each instruction is the one that counts

    assert instructions[0] == ("ARG", "BASE=python:3.12-slim")
    assert instructions[1] == ("FROM", "${BASE}")

    user = args["USER"].split(":")[0]
    assert user not in ("root", "0"), "the apps must not run as root"
    assert user.isdigit(), "a numeric USER lets Kubernetes runAsNonRoot check it"
    assert words.index("USER") > max(i for i, w in enumerate(words) if w == "RUN")

    cmd = json.loads(args["CMD"])  # exec form: the runtime itself is PID 1, no shell
    assert cmd[:4] == ["python", "-m", "runtime", "ecosystem.config.yml"]
    assert "ENTRYPOINT" not in words, "no tini or shell wrapper in front of the runtime"
    assert (EXAMPLE / cmd[3]).is_file()
    assert args["WORKDIR"].endswith("/examples/heroku-app")

    assert args["STOPSIGNAL"] == "SIGTERM"
    assert args["EXPOSE"] == "3000"
    assert re.search(r"\bPORT=3000\b", args["ENV"])

    host, port = web_port(cmd)
    assert host == "127.0.0.1"
    healthcheck = args["HEALTHCHECK"]
    assert "CMD" in healthcheck
    assert f"http://127.0.0.1:{port}/health" in healthcheck
    assert re.search(r"--timeout=\d+s", healthcheck)


def test_dockerfile_installs_dependencies_before_the_code() -> None:
    """Dependencies are installed from pyproject.toml alone, in a layer the code does not bust."""
    instructions = dockerfile_instructions()
    copies = [(i, rest) for i, (word, rest) in enumerate(instructions) if word == "COPY"]
    first_code_copy = min(i for i, rest in copies if rest.startswith("runtime"))
    dependency_runs = [
        i
        for i, (word, rest) in enumerate(instructions)
        if word == "RUN" and "pip install" in rest and "--no-deps" not in rest
    ]
    assert dependency_runs, "no dependency install step"
    assert max(dependency_runs) < first_code_copy
    assert all(  # nothing but the dependency lists is copied before they are installed
        rest.split()[0] in ("pyproject.toml", "examples/heroku-app/requirements.txt")
        for i, rest in copies
        if i < max(dependency_runs)
    )
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "**/.venv" in ignored
    assert "**/.git" in ignored


def kube_documents() -> dict[str, dict[str, Any]]:
    """Every manifest under examples/kubernetes, by kind."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in docs, f"two {doc['kind']} manifests"
                docs[doc["kind"]] = doc
    return docs


def resolve_port(container: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return int(number)


def test_kubernetes_manifests_fit_the_runtime() -> None:
    """Probes on the runtime's /health at a pod-reachable --web, grace above the stop, CPU limit."""
    docs = kube_documents()
    deployment, service, hpa = docs["Deployment"], docs["Service"], docs["HorizontalPodAutoscaler"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:4] == ["python", "-m", "runtime", "ecosystem.config.yml"]

    # the kubelet probes the pod IP: --web must not be loopback
    host, port = web_port(argv)
    assert host in ("0.0.0.0", "::")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health", probe
        assert resolve_port(container, get["port"]) == port, probe
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"]["path"] == "/health"

    # SIGTERM -> shutdown delay (503 on /health) -> graceful stop (kill_timeout) -> exit
    delay = float(argv[argv.index("--shutdown-delay") + 1])
    assert delay > 0
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > delay + example_kill_timeout_s()
    assert "lifecycle" not in container, "the drain is --shutdown-delay, not a preStop hook"

    # instances: max counts the CPU limit (the cgroup quota)
    limits = container["resources"]["limits"]
    assert limits["cpu"]
    assert limits["memory"]
    assert container["resources"]["requests"]["cpu"]

    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert "WEB_CONCURRENCY" not in env, "instances: max should follow the CPU limit"
    app_port = int(env["PORT"])
    assert env.get("HOST") in (None, "0.0.0.0")
    assert resolve_port(container, "http") == app_port

    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    assert security["runAsNonRoot"] is True

    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert resolve_port(container, service_port["targetPort"]) == app_port

    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert "replicas" in deployment["spec"]


def test_procfile_runs_the_example_ecosystem() -> None:
    """The root Procfile has one web line, the runtime on the example's ecosystem."""
    lines = [ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.strip()]
    assert len(lines) == 1
    kind, _, command = lines[0].partition(":")
    assert kind == "web"
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "runtime"]
    assert (ROOT / argv[3]).resolve() == (EXAMPLE / "ecosystem.config.yml").resolve()
