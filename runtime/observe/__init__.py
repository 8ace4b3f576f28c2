"""What the master shows about itself: metrics, status rows, /health, /metrics, the dashboard.

`metrics` samples worker process trees, `status` builds the rows of `list` and `show`,
`health` decides /health and the state words, `host` reads the machine, `web` serves
`--web` (HTTP framing in `messages`, the buttons' API in `api`, sparkline history in
`history`), `prom` renders Prometheus text, `dashboard` is the page (its parts in
`static/`). Reads the master only through the protocols in `view`; may import `config`,
`policy`, `logs`.
"""
