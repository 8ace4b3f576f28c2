"""Docker Swarm, for real: the runtime image as a replicated service, measured under load.

    .venv/bin/python bench/swarm.py                          # 3 rounds, 3 replicas (~4 min)
    .venv/bin/python bench/swarm.py --rounds 1 --keep        # leave it all up to look at
    .venv/bin/python bench/swarm.py --replicas 2 --scenarios update,kill --json out.json

Builds the base image (../shared/docker/make-base-image.sh) and the root Dockerfile,
joins or creates a single-node swarm, and runs the image as a service on an attachable
overlay network with `--endpoint-mode dnsrr` (no routing mesh, no VIP: this kernel has
no IPVS). Swarm gates each task on a `/health` check of the runtime's `--web` port, and
rolls updates start-first with rollback on failure; the runtime gets `--shutdown-delay`
on its command line (the image's CMD, extended). A load client (bench/swarm_client.py,
run with `python -c` in a container of the base image on the same network) re-resolves
`tasks.<service>` for every new connection. Each round measures, each under a fresh
client: a rolling `docker service update --force` (target: 0 failed requests),
`docker service scale` up and back down, and `docker kill` of one replica's container
(failures, and the time until every replica runs and is healthy again). Everything it
created (client containers, service, network, and the swarm if it made it) is removed
on the way out, also after an error or Ctrl-C. The docker plumbing (images, swarm,
teardown) is in bench/swarm_stack.py.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from swarm_stack import (
    BASE_IMAGE,
    GWBRIDGE,
    LABEL,
    BenchError,
    Stack,
    build_images,
    containers,
    docker,
    is_whole,
    join_swarm,
    leftovers,
    log,
    teardown,
    wait_for,
)

CLIENT_SOURCE = Path(__file__).resolve().parent / "swarm_client.py"
APP_PORT = 3000  # the image's PORT
WEB_PORT = 9615  # the image's --web 127.0.0.1:9615
KILL_TIMEOUT_S = 5.0  # the example's web kill_timeout (its worker's is 3 s)
SCENARIOS = ("update", "scale", "kill")
HEALTH_CMD = (
    'python -c "import sys, urllib.request as u; '
    f"sys.exit(u.urlopen('http://127.0.0.1:{WEB_PORT}/health', timeout=2).status != 200)\""
)


# --- the service ------------------------------------------------------------------------


def create_service(stack: Stack, ns: argparse.Namespace) -> None:
    """The overlay network and the replicated, health-gated service on it."""
    stack.network = f"rtswarm-{stack.run_id}-net"
    docker("network", "create", "--driver", "overlay", "--attachable", *stack.labels, stack.network)
    stack.service = f"rtswarm-{stack.run_id}"
    grace_s = KILL_TIMEOUT_S + ns.shutdown_delay + 5
    # The image's CMD with --shutdown-delay added (exec form, so the runtime stays PID 1).
    command = ["python", "-m", "runtime", "ecosystem.config.yml", "--web", f"127.0.0.1:{WEB_PORT}"]
    command += ["--shutdown-delay", f"{ns.shutdown_delay:g}"]
    docker(
        *("service", "create", "--detach", "--no-resolve-image", *stack.labels),
        *("--container-label", f"{LABEL}.run={stack.run_id}"),
        *("--name", stack.service, "--network", stack.network, "--endpoint-mode", "dnsrr"),
        *("--replicas", str(ns.replicas), "--env", f"WEB_CONCURRENCY={ns.web_concurrency}"),
        *("--health-cmd", HEALTH_CMD, "--health-interval", "1s", "--health-timeout", "2s"),
        *("--health-retries", "2", "--health-start-period", "10s"),
        *("--update-order", "start-first", "--update-parallelism", "1"),
        *("--update-delay", f"{ns.update_delay:g}s", "--update-monitor", "5s"),
        *("--update-failure-action", "rollback", "--update-max-failure-ratio", "0"),
        *("--rollback-order", "start-first", "--rollback-parallelism", "1"),
        *("--stop-grace-period", f"{grace_s:g}s", "--restart-delay", "1s"),
        *(ns.image, *command),
    )
    took = wait_for("service whole", lambda: is_whole(stack.service or "", ns.replicas), 120)
    log(f"service {stack.service}: {ns.replicas} replicas healthy in {took:.1f} s")


# --- load --------------------------------------------------------------------------------


@contextmanager
def load(stack: Stack, ns: argparse.Namespace, sink: dict[str, Any]) -> Iterator[None]:
    """A client container under load for the block's duration; its report lands in `sink`."""
    name = f"rtswarm-{stack.run_id}-client-{len(stack.clients)}"
    events = watch_events(stack.service or "")
    try:
        yield from run_client(stack, ns, sink, name)
    finally:
        sink["events"] = collect_events(events)


def run_client(
    stack: Stack, ns: argparse.Namespace, sink: dict[str, Any], name: str
) -> Iterator[None]:
    """Start the client, warm up, hand over to the scenario, then stop it and read it."""
    stack.clients.append(name)
    docker(
        *("run", "-d", "--name", name, "--network", stack.network or "", *stack.labels),
        *(BASE_IMAGE, "python", "-c", CLIENT_SOURCE.read_text()),
        *("--service", stack.service or "", "--port", str(APP_PORT), "--rate", f"{ns.rate:g}"),
        *("--concurrency", str(ns.concurrency), "--timeout", f"{ns.request_timeout:g}"),
        *("--requests-per-connection", str(ns.requests_per_connection)),
        *("--dns-cache", f"{ns.dns_cache:g}"),
    )
    wait_for("client started", lambda: "client_started" in docker("logs", name), 30)
    time.sleep(ns.warmup)
    # Swarm forgets the tasks of slots it scales away, so note the addresses now.
    sink["task_ips"] = task_ips(stack.service or "", stack.network or "")
    yield
    time.sleep(ns.settle)
    docker("kill", "--signal", "TERM", name)
    docker("wait", name, timeout_s=30)
    for line in reversed(docker("logs", name).splitlines()):
        if line.startswith("{") and '"client_report"' in line:
            sink.update(json.loads(line))
            break
    else:
        raise BenchError(f"client {name} printed no report")
    docker("rm", name)
    stack.clients.remove(name)


# --- events: what Swarm did, and when -----------------------------------------------------


def watch_events(service: str) -> subprocess.Popen[str]:
    """Stream the service containers' lifecycle events from now on.

    Streamed, not asked for afterwards with --since: the daemon replays past events
    from a small in-memory buffer, which the health probes' exec events (three per
    probe, one probe per second per replica) overrun within seconds.
    """
    wanted = ("start", "kill", "die", "health_status")
    return subprocess.Popen(
        [
            *("docker", "events", "--format", "{{json .}}", "--filter", "type=container"),
            *("--filter", f"label=com.docker.swarm.service.name={service}"),
            *(arg for event in wanted for arg in ("--filter", f"event={event}")),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def collect_events(proc: subprocess.Popen[str]) -> list[dict[str, Any]]:
    """Stop the stream (after a moment for the last events to arrive); its events."""
    time.sleep(0.5)
    proc.terminate()
    try:
        out, _ = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    events = []
    for line in out.splitlines():
        raw = json.loads(line)
        status = str(raw.get("status", ""))
        attrs = raw.get("Actor", {}).get("Attributes", {})
        events.append(
            {
                "t": raw["timeNano"] / 1e9,
                "status": status,
                "name": attrs.get("name", ""),
                "signal": attrs.get("signal"),
            }
        )
    return events


def task_ips(service: str, network: str) -> dict[str, str]:
    """Task id -> its address on `network`, for every task Swarm still lists."""
    ids = docker("service", "ps", "-q", "--no-trunc", service).split()
    if not ids:
        return {}
    found = {}
    for task in json.loads(docker("inspect", "--type", "task", *ids)):
        for attachment in task.get("NetworksAttachments") or []:
            for address in attachment.get("Addresses") or []:
                if attachment["Network"]["Spec"]["Name"] == network:
                    found[task["ID"]] = address.split("/")[0]
    return found


def dns_times(changes: Sequence[dict[str, Any]], ip: str) -> tuple[float | None, float | None]:
    """When the client's resolved set first had `ip`, and when it first lost it after that."""
    came = went = None
    for change in changes:
        present = ip in change["ips"]
        if present and came is None:
            came = change["t"]
        elif not present and came is not None and went is None:
            went = change["t"]
    return came, went


def timelines(stack: Stack, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per container touched under load: start, healthy, in/out of DNS, signal, exit."""
    service = stack.service or ""
    ips = {**report["task_ips"], **task_ips(service, stack.network or "")}
    rows: dict[str, dict[str, Any]] = {}
    for event in report["events"]:
        row = rows.setdefault(event["name"], {"container": event["name"]})
        key = {"start": "start", "die": "exit", "kill": "signal"}.get(event["status"])
        if event["status"] == "health_status: healthy":
            key = "healthy"
        if key and key not in row:
            row[key] = event["t"]
            if key == "signal":
                row["signal_number"] = event["signal"]
    for row in rows.values():
        ip = ips.get(row["container"].rsplit(".", 1)[-1])
        if ip:
            row["ip"] = ip
            row["dns_in"], row["dns_out"] = dns_times(report["dns_changes"], ip)
    # A container with none of these only had its old stopped copy removed (task history).
    return [r for r in rows.values() if r.keys() & {"start", "healthy", "signal", "exit"}]


def gap(rows: Sequence[dict[str, Any]], first: str, then: str) -> float | None:
    """The median over containers of `then - first`, where both are known."""
    gaps = [r[then] - r[first] for r in rows if r.get(first) and r.get(then)]
    return statistics.median(gaps) if gaps else None


# --- scenarios ---------------------------------------------------------------------------


def result(
    stack: Stack, scenario: str, report: dict[str, Any], whole_s: float, **extra: Any
) -> dict[str, Any]:
    """One scenario's figures: the client's counts, time to whole, and Swarm's timeline."""
    rows = timelines(stack, report)
    return {
        "scenario": scenario,
        "ok": report["ok"],
        "failed": report["failed"],
        "kinds": report["kinds"],
        "whole_s": round(whole_s, 2),
        # How long before its stop signal a replica left the client's DNS answer (< 0: after).
        "dns_lead_s": gap(rows, "dns_out", "signal"),
        "signal_to_exit_s": gap(rows, "signal", "exit"),
        "healthy_to_dns_s": gap(rows, "healthy", "dns_in"),
        "by_ip": report["by_ip"],
        "failures": report["failures"][:30],
        "per_second": report["per_second"],
        "timeline": rows,
        **extra,
    }


def update_status(service: str) -> tuple[str, str]:
    """(state, started at) of the service's last update; ('', '') before the first."""
    out = docker(
        *("service", "inspect", service, "--format"),
        "{{if .UpdateStatus}}{{.UpdateStatus.State}} {{.UpdateStatus.StartedAt}}{{end}}",
    ).split(" ", 1)
    return (out[0].strip(), out[1].strip()) if len(out) == 2 else ("", "")


def run_update(stack: Stack, ns: argparse.Namespace) -> dict[str, Any]:
    """A rolling `docker service update --force`: every task replaced, start-first."""
    service = stack.service or ""
    before = update_status(service)
    report: dict[str, Any] = {}
    with load(stack, ns, report):
        started = time.monotonic()
        docker("service", "update", "--detach", "--no-resolve-image", "--force", service)
        finished = ("completed", "paused", "rollback_completed", "rollback_paused")

        def settled() -> bool:
            state, began = update_status(service)
            return began != before[1] and state in finished

        wait_for("rolling update", settled, 60 + 30 * ns.replicas)
        state = update_status(service)[0]
        wait_for("service whole after update", lambda: is_whole(service, ns.replicas), 60)
        whole_s = time.monotonic() - started
    return result(stack, "update", report, whole_s, update_state=state)


def run_scale(stack: Stack, ns: argparse.Namespace, replicas: int, label: str) -> dict[str, Any]:
    """`docker service scale` to `replicas`, until exactly that many run and are healthy."""
    service = stack.service or ""
    report: dict[str, Any] = {}
    with load(stack, ns, report):
        started = time.monotonic()
        docker("service", "scale", "--detach", f"{service}={replicas}")
        wait_for(f"scale to {replicas}", lambda: is_whole(service, replicas), 120)
        whole_s = time.monotonic() - started
    return result(stack, label, report, whole_s)


def run_kill(stack: Stack, ns: argparse.Namespace) -> dict[str, Any]:
    """`docker kill` (SIGKILL) of one replica's container, until a new one is healthy."""
    service = stack.service or ""
    report: dict[str, Any] = {}
    with load(stack, ns, report):
        victim = sorted(name for name, _ in containers(service))[0]
        slot = victim.rsplit(".", 1)[0]  # service.N: the replacement takes the same slot
        started = time.monotonic()
        docker("kill", victim)
        wait_for("killed container gone", lambda: victim not in dict(containers(service)), 30)
        wait_for("service whole after kill", lambda: is_whole(service, ns.replicas), 120)
        whole_s = time.monotonic() - started
        replacement = [
            n for n, _ in containers(service) if n.startswith(slot + ".") and n != victim
        ]
    return result(stack, "kill", report, whole_s, killed=victim, replaced_by=replacement)


def run_round(stack: Stack, ns: argparse.Namespace, number: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for scenario in ns.scenarios:
        log(f"round {number}: {scenario}")
        if scenario == "update":
            results.append(run_update(stack, ns))
        elif scenario == "scale":
            results.append(run_scale(stack, ns, ns.scale_to, f"scale {ns.replicas}->{ns.scale_to}"))
            results.append(run_scale(stack, ns, ns.replicas, f"scale {ns.scale_to}->{ns.replicas}"))
        else:
            results.append(run_kill(stack, ns))
        for row in results[-2 if scenario == "scale" else -1 :]:
            row["round"] = number
            log(
                f"  {row['scenario']}: {row['ok']} ok, {row['failed']} failed {row['kinds'] or ''}, whole in {row['whole_s']} s"
            )
    return results


# --- output ------------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def spread(values: Sequence[float]) -> str:
    """Median (min-max) of a round's figures."""
    if not values:
        return "-"
    low, mid, high = min(values), statistics.median(values), max(values)
    style = "g" if all(float(v).is_integer() for v in values) else ".2f"
    return f"{mid:{style}} ({low:{style}}-{high:{style}})"


def markdown(ns: argparse.Namespace, results: Sequence[dict[str, Any]], header: str) -> str:
    lines = [header, ""]
    lines.append(
        "| round | scenario | ok | failed | kinds | time to whole | left DNS before stop signal | stop signal to exit | healthy to in DNS |"
    )
    lines.append("| ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in r["kinds"].items()) or "-"
        lines.append(
            f"| {r['round']} | {r['scenario']} | {r['ok']} | {r['failed']} | {kinds} | {seconds(r['whole_s'])} "
            f"| {seconds(r['dns_lead_s'])} | {seconds(r['signal_to_exit_s'])} | {seconds(r['healthy_to_dns_s'])} |"
        )
    lines += ["", "| scenario | failed requests, median (min-max) | time to whole, s | target |"]
    lines.append("| --- | ---: | ---: | --- |")
    for scenario in dict.fromkeys(r["scenario"] for r in results):
        rows = [r for r in results if r["scenario"] == scenario]
        failed = [float(r["failed"]) for r in rows]
        target = "-"
        if scenario == "update":
            target = "0 failed: " + ("**PASS**" if max(failed) == 0 else "**MISS**")
        lines.append(
            f"| {scenario} | {spread(failed)} | {spread([r['whole_s'] for r in rows])} | {target} |"
        )
    return "\n".join(lines)


def describe_run(ns: argparse.Namespace, argv: Sequence[str]) -> str:
    """The command, date, machine load and set-up, above the table."""
    import shlex

    command = " ".join([".venv/bin/python", "bench/swarm.py", *map(shlex.quote, argv)])
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    server = docker("version", "--format", "{{.Server.Version}}", check=False).strip()
    return (
        f"`{command}`\n\n"
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; `uptime`: {uptime}; "
        f"{os.cpu_count()} CPUs; Docker server {server}, single-node swarm; base image "
        f"{BASE_IMAGE} (Debian bookworm's Python 3.11, a stand-in for python:3.12-slim). "
        f"{ns.replicas} replicas (WEB_CONCURRENCY={ns.web_concurrency}), --shutdown-delay "
        f"{ns.shutdown_delay:g}, update delay {ns.update_delay:g} s, health check every 1 s; "
        f"client: {ns.rate:g} req/s over {ns.concurrency} loops, {ns.requests_per_connection} "
        f"request(s) per connection, DNS answers reused for {ns.dns_cache:g} s, "
        f"{ns.request_timeout:g} s timeout."
    )


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/swarm.py", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    add = parser.add_argument
    add("--rounds", type=int, default=3, help="how many times to run every scenario")
    add("--replicas", type=int, default=3)
    add("--scale-to", type=int, default=5, help="the scale scenario's peak")
    add("--scenarios", default=",".join(SCENARIOS), help="comma-separated: update,scale,kill")
    add("--keep", action="store_true", help="leave the swarm, network and service up (debugging)")
    add("--image", default="runtime-swarm:bench", help="tag for the project's image")
    add("--no-build", action="store_true", help="use --image as it is")
    add("--shutdown-delay", type=float, default=3.0, help="the runtime's --shutdown-delay, s")
    add("--update-delay", type=float, default=2.0, help="Swarm's --update-delay, s")
    add("--web-concurrency", type=int, default=1, help="web workers per replica")
    add("--rate", type=float, default=100.0, help="client requests per second")
    add("--concurrency", type=int, default=8, help="client loops")
    add("--requests-per-connection", type=int, default=1, help="1: a fresh connection each")
    add("--dns-cache", type=float, default=0.0, help="client reuses a DNS answer this long, s")
    add("--request-timeout", type=float, default=2.0)
    add("--warmup", type=float, default=2.0, help="load before each action, s")
    add("--settle", type=float, default=2.0, help="load after the service is whole again, s")
    add("--run-id", default="", help="suffix of every name (default: random)")
    add("--json", type=Path, help="write every figure and timeline here")
    ns = parser.parse_args(argv)
    ns.scenarios = [s for s in ns.scenarios.split(",") if s]
    if not ns.scenarios or set(ns.scenarios) - set(SCENARIOS):
        parser.error(f"--scenarios: choose from {','.join(SCENARIOS)}")
    if ns.rounds < 1 or ns.replicas < 1 or ns.scale_to <= ns.replicas:
        parser.error("--rounds and --replicas must be >= 1, --scale-to above --replicas")
    return ns


def interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def finish(stack: Stack, ns: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Teardown (signals ignored meanwhile, every docker call bounded); errors, leftovers."""
    if ns.keep:
        steps = [f"docker rm -f {' '.join(stack.clients)}"] if stack.clients else []
        steps += [f"docker service rm {stack.service}"] if stack.service else []
        steps += [f"docker network rm {stack.network}"] if stack.network else []
        steps += ["docker swarm leave --force"] if stack.created_swarm else []
        steps += [f"docker network rm {GWBRIDGE}"] if stack.created_gwbridge else []
        log("--keep: left up; to remove it: " + "; ".join(steps))
        return [], []
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        log("tearing down")
        errors = teardown(stack)
        try:
            left = leftovers(stack.run_id, stack.created_swarm, stack.created_gwbridge)
        except BenchError as exc:
            left = [f"cannot tell: {exc}"]
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for problem in errors + left:
        log(f"teardown: {problem}")
    return errors, left


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ns = parse_args(args)
    stack = Stack(run_id=ns.run_id or uuid.uuid4().hex[:6])
    signal.signal(signal.SIGTERM, interrupted)
    results: list[dict[str, Any]] = []
    error = ""
    header = ""
    try:
        if not ns.no_build:
            build_images(ns.image)
        header = describe_run(ns, args)
        join_swarm(stack)
        create_service(stack, ns)
        for number in range(1, ns.rounds + 1):
            results += run_round(stack, ns, number)
    except (BenchError, KeyboardInterrupt) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log(f"stopped early: {error}")
    finally:
        errors, left = finish(stack, ns)
    if results:
        print(markdown(ns, results, header))
    if ns.json:
        summary = {
            "run_id": stack.run_id,
            "service": stack.service,
            "network": stack.network,
            "created_swarm": stack.created_swarm,
            "created_gwbridge": stack.created_gwbridge,
            "error": error,
            "teardown_errors": errors,
            "leftovers": left,
            "results": results,
        }
        ns.json.write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if error or errors or left else 0


if __name__ == "__main__":
    sys.exit(main())
