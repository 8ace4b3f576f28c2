"""The Kubernetes example never serves `--web` on the pod IP without a token (#13, fault 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from runtime.cli.run import check_web_exposure, parse_run_args
from runtime.observe.webspec import is_loopback, parse_web_spec

KUBE = Path(__file__).resolve().parents[2] / "examples" / "kubernetes"


def containers() -> list[dict[str, Any]]:
    """Every container of every workload manifest under examples/kubernetes."""
    found = []
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            found += pod.get("containers", [])
    return found


def test_the_web_token_is_required_by_every_container_that_serves_web() -> None:
    """Each `--web` beyond loopback gets RUNTIME_WEB_TOKEN from a Secret key that is not optional."""
    served = 0
    for container in containers():
        argv = [*container.get("command", []), *container.get("args", [])]
        if "--web" not in argv:
            continue
        host, _ = parse_web_spec(argv[argv.index("--web") + 1])
        assert "--web-insecure" not in argv
        if is_loopback(host) or "--web-token" in argv:
            continue
        served += 1
        env = {e["name"]: e for e in container.get("env", [])}
        ref = env["RUNTIME_WEB_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"]
        assert ref["key"]
        assert ref.get("optional", False) is False, "the pod must not start without its token"
        # the runtime itself accepts the line once the Secret's value is there
        run_args = argv[argv.index("runtime") + 1 :]
        check_web_exposure(parse_run_args(run_args, environ={"RUNTIME_WEB_TOKEN": "t"}))
    assert served, "no container serves --web beyond loopback: the test checks nothing"
