"""The Kubernetes example against a real runtime: the probes' paths, the metrics the HPA
scales on, the scrape's token and the drain budget all exist where the manifests say.

The Deployment's own command line runs here (the example ecosystem, `--env prod`,
`--shutdown-delay`), with two changes for a test: `--web` and the app's `PORT` on free
loopback ports, `HOST=127.0.0.1`.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ROOT, Master, free_port

KUBE = ROOT / "examples" / "kubernetes"
EXAMPLE = ROOT / "examples" / "heroku-app"
TOKEN = "k8s-test-token"


def manifests() -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBE.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[doc["kind"]] = doc
    return docs


def get(port: int, path: str, token: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def adapter_rules() -> list[dict[str, Any]]:
    config = manifests()["ConfigMap"]["data"]["config.yaml"]
    rules: list[dict[str, Any]] = yaml.safe_load(config)["rules"]
    return rules


def test_the_manifests_name_what_a_real_runtime_serves(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    docs = manifests()
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = [*container["command"], *container.get("args", [])]
    args = argv[argv.index("runtime") + 1 :]
    web = free_port()
    args[args.index("--web") + 1] = f"127.0.0.1:{web}"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env.update(PORT=str(free_port()), HOST="127.0.0.1", RUNTIME_WEB_TOKEN=TOKEN)
    master = run_master(*args, "--control", str(tmp_path / "ctl.sock"), env=env, cwd=EXAMPLE)
    master.wait_event("worker_ready", app="web")

    # every probe's path is a route of the runtime (200 or 503, never 404), without a token
    probes = [container[p]["httpGet"] for p in container if p.endswith("Probe")]
    assert probes
    for probe in probes:
        deadline = time.monotonic() + 20
        while (code := get(web, probe["path"])[0]) != 200 and time.monotonic() < deadline:
            assert code == 503, (probe["path"], code)
            time.sleep(0.1)
        assert code == 200, probe["path"]

    # the scrape: the PodMonitor's port and path, with the Secret the Deployment requires
    (endpoint,) = docs["PodMonitor"]["spec"]["podMetricsEndpoints"]
    (named,) = [p for p in container["ports"] if p["name"] == endpoint["port"]]
    assert named["containerPort"] == int(argv[argv.index("--web") + 1].rsplit(":", 1)[1])
    secret = {e["name"]: e for e in container["env"]}["RUNTIME_WEB_TOKEN"]["valueFrom"]
    assert endpoint["authorization"]["credentials"] == secret["secretKeyRef"]
    assert get(web, endpoint["path"])[0] == 401
    code, body = get(web, endpoint["path"], TOKEN)
    assert code == 200
    served: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            served.setdefault(sample.name, []).append(sample.labels)

    # each adapter rule's series is on /metrics, with the label its query keeps, and the
    # metric it publishes is the one the HPA asks for
    hpa_pods = {
        m["pods"]["metric"]["name"]
        for m in docs["HorizontalPodAutoscaler"]["spec"]["metrics"]
        if m["type"] == "Pods"
    }
    assert hpa_pods
    published = set()
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"])
        assert series is not None
        assert series.group(0) in served, f"{series.group(0)} is not on /metrics"
        kept = dict(re.findall(r'(\w+)="(\w+)"', rule["metricsQuery"]))
        assert any(kept.items() <= labels.items() for labels in served[series.group(0)]), kept
        published.add(rule["name"]["as"])
    assert hpa_pods <= published
    cpu = [m for m in docs["HorizontalPodAutoscaler"]["spec"]["metrics"] if m["type"] == "Resource"]
    assert [m["resource"]["name"] for m in cpu] == ["cpu"], "CPU is the fallback metric"

    # the drain fits the grace period: --shutdown-delay + the longest kill_timeout
    delay = float(args[args.index("--shutdown-delay") + 1])
    eco = yaml.safe_load((EXAMPLE / "ecosystem.config.yml").read_text())
    kill_s = max(app.get("kill_timeout", 1600) for app in eco["apps"]) / 1000
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] > pre_stop + delay + kill_s
