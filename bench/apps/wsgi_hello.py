"""A WSGI hello-world for bench/chaos.py under `gunicorn -w 2`: answers `<pid>\n`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"{os.getpid()}\n".encode()  # after gunicorn's fork: the worker's own pid
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
