"""The root Dockerfile built and run for real, where a Docker daemon answers.

Builds the image on `local/python-base` (a Debian stand-in for python:3.12-slim made by
`../shared/docker/make-base-image.sh`, since no registry is reachable here), runs it
with `-e PORT` published on loopback, and checks what `docker run` / `docker stop`
users rely on. Skipped, not failed, when there is no Docker (CI).
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

BASE = "local/python-base"
MAKE_BASE = ROOT.parent / "shared" / "docker" / "make-base-image.sh"
IMAGE = "runtime-example:e2e"
WEB_PORT = 9615  # the Dockerfile's --web 127.0.0.1:9615
APP_PORT = 8000  # a PORT other than the image's default 3000, as Heroku-style platforms do
STOP_LIMIT_S = 10.0  # docker stop's default grace period before SIGKILL


def docker(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=check
    )


def docker_available() -> str | None:
    """None when a daemon answers `docker info` within a few seconds, else why not."""
    if shutil.which("docker") is None:
        return "no docker client"
    try:
        info = docker("info", timeout=5, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    if info.returncode != 0:
        return f"no Docker daemon: {(info.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


@pytest.fixture(scope="module")
def image() -> str:
    """The project's image, built from the root Dockerfile on the local base image."""
    reason = docker_available()
    if reason:
        pytest.skip(reason)
    if docker("image", "inspect", BASE, check=False).returncode != 0:
        if not MAKE_BASE.is_file():
            pytest.skip(f"base image {BASE} missing and no {MAKE_BASE} to build it")
        made = subprocess.run(
            [str(MAKE_BASE), BASE], capture_output=True, text=True, timeout=900, check=False
        )
        if made.returncode != 0:
            pytest.skip(f"cannot build {BASE}: {made.stderr.strip()[-300:]}")
    build = docker(
        "build", "--build-arg", f"BASE={BASE}", "-t", IMAGE, str(ROOT), timeout=900, check=False
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    return IMAGE


@pytest.fixture
def container(image: str) -> Iterator[tuple[str, int]]:
    """A running container of the image: (name, published loopback port); removed after."""
    name = f"runtime-e2e-{uuid.uuid4().hex[:8]}"
    port = free_port()
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--publish",
        f"127.0.0.1:{port}:{APP_PORT}",
        "--env",
        f"PORT={APP_PORT}",
        "--cpus",
        "1",  # instances: max must follow the quota, not the host's cores
        "--read-only",  # as Kubernetes' readOnlyRootFilesystem with an emptyDir on /tmp
        "--tmpfs",
        "/tmp",
        "--health-interval",
        "1s",  # the image's 10 s, shortened for the test
        image,
    )
    try:
        yield name, port
    finally:
        docker("rm", "--force", name, check=False)


def get(port: int, path: str = "/") -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def state(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        docker("inspect", "--format", "{{json .State}}", name).stdout
    )
    return result


def wait_until(predicate: Any, timeout: float, what: str, name: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.25)
    logs = docker("logs", "--tail", "30", name, check=False)
    pytest.fail(f"timed out waiting for {what}\n{logs.stdout}{logs.stderr}")


def answer(port: int) -> dict[str, Any] | None:
    try:
        status, body = get(port)
    except (OSError, http.client.HTTPException, ValueError):
        return None
    return body if status == 200 else None


def test_image_serves_turns_healthy_and_stops_cleanly(container: tuple[str, int]) -> None:
    """`docker run -e PORT` serves GET /, HEALTHCHECK turns healthy, `docker stop` exits 0 fast."""
    name, port = container
    body = wait_until(lambda: answer(port), 60, "GET / through the published port", name)
    assert body["app"] == "web"
    assert body["message"] == "hello from runtime"

    health = wait_until(
        lambda: (h := state(name).get("Health")) and h["Status"] == "healthy" and h,
        60,
        "the HEALTHCHECK to report healthy",
        name,
    )
    assert health["Log"][-1]["ExitCode"] == 0

    # the runtime is PID 1, as uid 10001, with one web instance per CPU of the quota
    cmdline = docker("exec", name, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert cmdline[:4] == ["python", "-m", "runtime", "ecosystem.config.yml"]
    assert docker("exec", name, "id", "-u").stdout.strip() == "10001"
    listing = docker("exec", name, "python", "-m", "runtime", "list").stdout
    assert sum(" web " in line for line in listing.splitlines()) == 1, listing

    started = time.monotonic()
    docker("stop", "--time", str(int(STOP_LIMIT_S)), name, timeout=STOP_LIMIT_S + 20)
    elapsed = time.monotonic() - started
    final = state(name)
    assert final["ExitCode"] == 0
    assert not final["OOMKilled"]
    assert elapsed < STOP_LIMIT_S / 2, f"docker stop took {elapsed:.1f}s"

    logs = docker("logs", name).stdout.splitlines()
    events = [json.loads(line) for line in logs if line.startswith("{")]
    exited = [e for e in events if e.get("event") == "runtime_exited"]
    assert [e["code"] for e in exited] == [0]
    assert not [e for e in events if e.get("event") == "restart_scheduled"]
    assert all(e["code"] == 0 for e in events if e.get("event") == "worker_exited")
    print(f"docker stop: {elapsed:.2f}s, exit code {final['ExitCode']}")
