"""Every line the master writes: worker output (the hot path) and the master's own events.

`sink` reads worker pipes and is the single writer of stdout, `formats` turns lines and
events into JSON, pretty, pm2 or raw output, `events` renders the master's events with
structlog, `ring` keeps the recent lines for `logs` and the dashboard. May import `proc`
(pipe helpers), `errors` and the standard library.
"""
