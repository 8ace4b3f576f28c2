"""`--web` under a sustained attack (#13, "Prove it"): idle connections and slowloris never
deny or slow `/health`. Unlike test_web_attack.py's fixed sets of connections, the attacker
here keeps ATTACKERS connections open by reconnecting whatever the server drops (evicted or
timed out), while `/health` is asked every 50 ms: each answer 200 (speed: bench/web_siege.py).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.probes import Attacker, assert_fast, probe_during
from tests.integration.conftest import free_port, write_ecosystem

ATTACKERS = 200
ATTACK_S = 4.0


@pytest.mark.parametrize("slowloris", [False, True], ids=["idle", "slowloris"])
def test_health_answers_fast_under_a_sustained_attack(
    tmp_path: Path, run_master: Any, slowloris: bool
) -> None:
    """With 200 idle (or slowloris) connections held on --web, every /health is 200, the
    median under 100 ms and none near a timeout."""
    web = free_port()
    app = {"name": "s", "script": "/bin/sleep", "args": ["600"], "interpreter": "none"}
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [app])), "--web", f"127.0.0.1:{web}")
    m.wait_event("worker_ready")
    quiet = probe_during(web, 0.5)
    assert {s for s, _ in quiet} == {200}
    with Attacker(web, ATTACKERS, slowloris) as attacker:
        time.sleep(0.3)
        probes = probe_during(web, ATTACK_S)
    times = [t for _, t in probes]
    kind = "slowloris" if slowloris else "idle"
    print(
        f"\nweb attack={kind} connections={ATTACKERS} reconnects={attacker.reconnects}"
        f" probes={len(probes)} non200={sum(s != 200 for s, _ in probes)}"
        f" median_ms={statistics.median(times) * 1000:.1f} max_ms={max(times) * 1000:.1f}"
        f" quiet_max_ms={max(t for _, t in quiet) * 1000:.1f}"
    )
    assert [s for s, _ in probes if s != 200] == []
    assert_fast(probes)
    assert m.proc.poll() is None
