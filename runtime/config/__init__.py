"""Ecosystem files in, validated `AppSpec`s out: the first thing the master does.

Reading files (YAML, JSON, TOML, JS through node, Procfile), `${VAR}` expansion, `.env`
files, the CPU count, resolving each app's command line (`load`), and the pure rules for
what every key means (`keys`, `spec`). Imports only `runtime.errors` and the standard
library (plus PyYAML, tomllib and croniter for the files and values that need them).
"""
