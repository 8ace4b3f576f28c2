"""Pure decision core: frozen data in, decisions out; no I/O, no clocks, no processes.

`restart` (backoff, max_restarts, min_uptime, stop_exit_codes), `memory`
(max_memory_restart), `lifecycle` (app statuses, auto-exit, signal escalation),
`rollout` (the rolling-reload state machine) and `scale` (desired vs running slots).
Nothing here may import asyncio, os, signal, socket, subprocess, psutil or time;
`tests/unit/test_pure_imports.py` enforces it.
"""
