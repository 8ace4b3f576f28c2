"""A worker's JSON object line cannot pose as another process (#13, fault 11)."""

from __future__ import annotations

import json

import pytest

from runtime.logs.formats import JsonFormatter, Source

SRC = Source("web", 2, 4121)


@pytest.mark.parametrize("key", ["app", "instance", "stream", "pid"])
def test_identity_keys_stay_the_runtimes_own(key: str) -> None:
    """`app`, `instance`, `stream` and `pid` in a worker's JSON line are the runtime's values;
    the worker's other keys (level, message, its own fields) are kept."""
    forged = {"app": "db", "instance": 9, "stream": "stderr", "pid": 1}
    raw = json.dumps({key: forged[key], "level": "warning", "message": "hi", "user": 7})
    record = json.loads(
        JsonFormatter().line(SRC, "stdout", "2026-01-01T00:00:00.000Z", raw.encode())
    )
    assert (record["app"], record["instance"], record["stream"], record["pid"]) == (
        "web",
        2,
        "stdout",
        4121,
    )
    assert (record["level"], record["message"], record["user"]) == ("warning", "hi", 7)
