"""The background worker of the example: a JSON heartbeat every few seconds.

`$HEARTBEAT_INTERVAL` seconds between beats (default 5). SIGTERM / SIGINT stop it
at once (no sleep to finish first) with exit code 0, however many of them arrive.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def main() -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    interval = float(os.environ.get("HEARTBEAT_INTERVAL", "5"))
    message = os.environ.get("MESSAGE", "")
    instance = int(os.environ.get("RUNTIME_INSTANCE", "0") or 0)
    beats = 0

    def emit(**record: object) -> None:
        sys.stdout.write(
            json.dumps({"level": "info", "instance": instance, **record}, separators=(",", ":"))
            + "\n"
        )
        sys.stdout.flush()

    emit(message="worker started", interval_s=interval)
    while not stop.is_set():
        beats += 1
        emit(message="heartbeat", beat=beats, note=message, at=round(time.time(), 3))
        # Short waits: a signal handler only runs between them when the lock wait under
        # Event.wait is not interrupted by the signal, so shutdown never waits a whole beat.
        deadline = time.monotonic() + interval
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.1)
    emit(message="worker stopping", beats=beats)
    # Interpreter shutdown restores SIG_DFL; a second SIGTERM (platform + master) arriving
    # then must not turn this exit 0 into a death by signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    sys.exit(main())
