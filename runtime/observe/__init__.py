"""What the master shows about itself: metrics, status rows, /health, /metrics, the dashboard.

`metrics` samples worker process trees, `status` builds the rows of `list` and `show`,
`web` serves `--web`, `prom` renders Prometheus text, `dashboard` is the page. Reads the
master only through the protocols in `view`; may import `config`, `policy`, `logs`.
"""
