"""Autoscaling one app inside the container: `instances: {min, max}` (policy.autoscale).

Once a second the app's saturation (connections waiting in its listeners, from the
load sampler) and its workers' CPU go to the pure policy; a decision becomes one
`autoscaled` event with its reason, and a scale: up by starting slots, down by the
drain rule (`App._remove_slots`), so no connection is reset.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from runtime.observe.load import LoadSampler
from runtime.observe.metrics import Sampler
from runtime.policy.autoscale import AutoscaleSpec, AutoscaleState, LoadReading, decide_autoscale
from runtime.policy.scale import ScaleRequest
from runtime.supervise.app import App

TICK_S = 1.0


def app_cpu(app: App, sampler: Sampler) -> float | None:
    """The mean CPU % of the app's workers in the last sample (None before two samples)."""
    values = [cpu for w in app.workers() if (cpu := sampler.cpu.get(w.pid)) is not None]
    return sum(values) / len(values) if values else None


async def autoscale(
    app: App, spec: AutoscaleSpec, load: LoadSampler, sample: Callable[[float], Sampler]
) -> None:
    """Run until cancelled (the app is removed, or the master stops)."""
    loop = asyncio.get_running_loop()
    state = AutoscaleState()
    while True:
        await asyncio.sleep(TICK_S)
        now = loop.time()
        reading = LoadReading(now, load.saturation(app.spec.name), app_cpu(app, sample(TICK_S / 2)))
        state, decision = decide_autoscale(spec, state, reading, len(app.slots))
        if decision is None or app.shutting_down():
            continue
        app.app_event(
            "autoscaled",
            instances=decision.instances,
            was=len(app.slots),
            reason=decision.reason,
            saturation=round(reading.saturation, 3),
            cpu_percent=None if reading.cpu_percent is None else round(reading.cpu_percent, 1),
        )
        await app.scale(ScaleRequest("set", decision.instances))
