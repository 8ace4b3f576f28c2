"""Processes and sockets at the operating-system edge: spawning, reaping, stopping workers.

`spawn` forks and execs one worker (fds, environment, process group, death signal),
`reaper` is the one `waitpid` caller and the one stop helper, `sockets` binds the
pre-bound listeners, `notify` receives sd_notify datagrams. May import `config` and
`errors`; knows nothing about apps or slots.
"""
