"""Asking a running master whether it still answers: control `ping`, `/health`, its RSS."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path


def ping(control: Path, timeout_s: float = 2.0) -> bool:
    """One `ping` on the control socket, answered `ok` within `timeout_s`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(control))
        s.sendall(b'{"v": 1, "cmd": "ping", "target": null, "args": {}}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return bool(json.loads(reply).get("ok"))


def health(port: int, timeout_s: float = 2.0) -> tuple[int, float]:
    """GET /health on `--web`: (status, seconds from connect to the whole answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    took = time.monotonic() - started
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, took


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def alive(pid: int) -> bool:
    """Running (not a zombie), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
