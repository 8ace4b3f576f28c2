"""Docker plumbing for bench/swarm.py: the images, the swarm, a service's state, teardown.

Everything goes through the docker CLI with a bound on each call. What a run creates is
named in a `Stack` and labelled, so that the teardown removes exactly that and a check
afterwards can tell what, if anything, is left.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAKE_BASE = ROOT.parent / "shared" / "docker" / "make-base-image.sh"
BASE_IMAGE = "local/python-base"
LABEL = "runtime.bench"  # on everything a run creates: service, network, containers
GWBRIDGE = "docker_gwbridge"
POLL_S = 0.25


class BenchError(Exception):
    """A step of the scenario that did not happen as it must (not a measured failure)."""


def docker(*args: str, timeout_s: float = 60.0, check: bool = True) -> str:
    """Run one docker CLI command; its stdout, or BenchError naming the command."""
    try:
        done = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"docker {' '.join(args[:3])} timed out after {timeout_s} s") from exc
    if check and done.returncode != 0:
        raise BenchError(f"docker {' '.join(args[:3])}: {done.stderr.strip()[-400:]}")
    return done.stdout


def log(message: str) -> None:
    print(f"[swarm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_for(what: str, check: Callable[[], bool], timeout_s: float) -> float:
    """Poll `check` until true; the seconds it took, or BenchError after `timeout_s`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise BenchError(f"{what}: not done after {timeout_s:.0f} s")
        time.sleep(POLL_S)
    return time.monotonic() - start


# --- images ----------------------------------------------------------------------------


def build_images(tag: str) -> None:
    """The base image (once per machine) and the project's image from this checkout."""
    log(f"base image via {MAKE_BASE}")
    done = subprocess.run(
        [str(MAKE_BASE), BASE_IMAGE], capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"make-base-image.sh failed: {done.stderr.strip()[-400:]}")
    started = time.monotonic()
    docker("build", "-q", "--build-arg", f"BASE={BASE_IMAGE}", "-t", tag, str(ROOT), timeout_s=900)
    log(f"image {tag} built in {time.monotonic() - started:.1f} s")


# --- what this run creates, and its teardown --------------------------------------------


@dataclass
class Stack:
    """The names of what this run created, so that teardown removes exactly that."""

    run_id: str
    created_swarm: bool = False
    created_gwbridge: bool = False  # swarm init makes docker_gwbridge; leaving keeps it
    network: str | None = None
    service: str | None = None
    clients: list[str] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return ["--label", f"{LABEL}=swarm", "--label", f"{LABEL}.run={self.run_id}"]


def join_swarm(stack: Stack) -> None:
    """`docker swarm init` unless this daemon is in a swarm already (then leave it as is)."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state == "active":
        if docker("info", "--format", "{{.Swarm.ControlAvailable}}").strip() != "true":
            raise BenchError("this daemon is in a swarm but not a manager: cannot create services")
        log("daemon already in a swarm: using it, will not leave it")
        return
    if state != "inactive":
        raise BenchError(f"swarm state is {state!r}; expected inactive or active")
    stack.created_gwbridge = not network_exists(GWBRIDGE)
    try:
        docker("swarm", "init")
    except BenchError:  # several addresses and none chosen: a single node can use loopback
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    stack.created_swarm = True
    log("swarm initialised (this run will leave it)")


def teardown(stack: Stack) -> list[str]:
    """Remove what `stack` names, each step tried even if one before failed; the errors."""
    errors: list[str] = []

    def attempt(step: Callable[..., object], *args: Any) -> None:
        try:
            step(*args)
        except BenchError as exc:
            errors.append(str(exc))

    for name in stack.clients:
        attempt(docker, "rm", "-f", name)
    if stack.service:
        service = stack.service
        attempt(lambda: docker("service", "rm", service))
        # Swarm stops the tasks (SIGTERM, --shutdown-delay, the workers' stop) and then
        # removes their containers; leaving the swarm before that would strand them.
        attempt(lambda: wait_for("service containers removed", lambda: not tasks_left(service), 60))
    if stack.network:
        network = stack.network
        # Endpoints are released asynchronously after the last container goes.
        attempt(lambda: wait_for("network removed", lambda: remove_network(network), 60))
    if stack.created_swarm:
        attempt(lambda: docker("swarm", "leave", "--force", timeout_s=120))
    if stack.created_gwbridge:
        attempt(lambda: wait_for("docker_gwbridge removed", lambda: remove_network(GWBRIDGE), 30))
    return errors


def network_exists(name: str) -> bool:
    return bool(docker("network", "ls", "-q", "--filter", f"name=^{name}$").strip())


def remove_network(name: str) -> bool:
    """True once the network is gone (removed now, or absent already)."""
    docker("network", "rm", name, check=False)
    return not network_exists(name)


def tasks_left(service: str) -> list[str]:
    """The service's containers in any state (swarm removes them after they exit)."""
    label = f"label=com.docker.swarm.service.name={service}"
    return docker("ps", "-aq", "--filter", label).split()


def leftovers(run_id: str, created_swarm: bool, created_gwbridge: bool) -> list[str]:
    """What of a run is still there: services, networks, containers, the swarm it made."""
    found: list[str] = []
    label = f"label={LABEL}.run={run_id}"
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state == "active":  # services exist only in a swarm
        services = docker("service", "ls", "-q", "--filter", label).split()
        found += [f"service {s}" for s in services]
    found += [f"network {n}" for n in docker("network", "ls", "-q", "--filter", label).split()]
    found += [f"container {c}" for c in docker("ps", "-aq", "--filter", label).split()]
    if created_swarm and state != "inactive":
        found.append(f"swarm ({state})")
    if created_gwbridge and network_exists(GWBRIDGE):
        found.append(f"network {GWBRIDGE}")
    return found


def containers(service: str) -> list[tuple[str, str]]:
    """(name, status) of the service's running containers, e.g. 'Up 5 seconds (healthy)'."""
    out = docker(
        "ps",
        "--filter",
        f"label=com.docker.swarm.service.name={service}",
        "--format",
        "{{.Names}}\t{{.Status}}",
    )
    rows = (line.partition("\t") for line in out.splitlines())
    return [(name, status) for name, _, status in rows if status]


def is_whole(service: str, replicas: int) -> bool:
    """Exactly `replicas` tasks want to run and do, and as many containers, all healthy."""
    states = docker(
        "service",
        "ps",
        service,
        "--filter",
        "desired-state=running",
        "--format",
        "{{.CurrentState}}",
    ).splitlines()
    if len(states) != replicas or not all(s.startswith("Running") for s in states):
        return False
    running = containers(service)
    return len(running) == replicas and all("(healthy)" in status for _, status in running)
