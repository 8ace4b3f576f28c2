"""`--web [HOST:]PORT`, parsed without importing the web server (checked before any fork)."""

from __future__ import annotations

import ipaddress

from runtime.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"


def parse_web_spec(spec: str) -> tuple[str, int]:
    """`PORT`, `HOST:PORT`, `[V6]:PORT` or `:PORT` (host 127.0.0.1 when left out)."""
    host, sep, port_text = spec.strip().rpartition(":")
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host:
        host = DEFAULT_HOST
    if not port_text.isdigit() or int(port_text) > 65535 or ("[" in host or "]" in host):
        raise ConfigError("--web", f"expected [HOST:]PORT, got {spec!r}")
    return host, int(port_text)


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this host only: a 127/8 or ::1 literal, `localhost`."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to any interface
