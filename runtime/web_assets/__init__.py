"""What the `--web` server serves besides JSON: the dashboard page, kept in Python strings
so it ships in the wheel with no package-data configuration and loads nothing external."""
