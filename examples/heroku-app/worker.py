"""The background worker of the example: a JSON heartbeat every few seconds.

`$HEARTBEAT_INTERVAL` seconds between beats (default 5). SIGTERM / SIGINT stop it
at once (no sleep to finish first) with exit code 0, however many of them arrive.

The stop signals are blocked and waited for (`sigtimedwait`) between beats, instead of
caught by a handler: a Python handler runs between any two bytecodes, and one that sets
a `threading.Event` deadlocks when it lands inside the Event's own `wait()`, which holds
the lock that `set()` needs. The process then hangs until the platform's SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def main() -> int:
    # Blocked from here on, also through interpreter shutdown: a second SIGTERM (the
    # platform's and the master's) stays pending instead of turning exit 0 into a kill.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
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
    while True:
        beats += 1
        emit(message="heartbeat", beat=beats, note=message, at=round(time.time(), 3))
        if signal.sigtimedwait(STOP_SIGNALS, max(interval, 0.0)) is not None:
            break
    emit(message="worker stopping", beats=beats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
