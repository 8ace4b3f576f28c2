"""The master's start before its event loop exists: bind every socket, fork every worker.

`early` binds the control, notify and listening sockets and forks the first workers;
`relay` forwards their first lines while the event loop's modules load. May import
`config`, `proc`, `logs` and `control.bind`; never asyncio.
"""
