"""`show` and `show --json` of a running app print no secret (#13, fault 11)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.integration.conftest import Master, py
from tests.integration.test_control_bounds import cli, start
from tests.unit.test_secrets import PLAIN_ENV, SECRET_ENV

SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"


def test_show_masks_env_urls_and_secret_arguments(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """Env secrets (by name and URL password) and `--password=`/`--token x` args are masked."""
    app = {"name": "w", **py(SLEEPER), "env": {**SECRET_ENV, **PLAIN_ENV}}
    app["args"] = [*app["args"], "--password=s3cret-16", "--token", "s3cret-17"]
    _master, ctl = start(run_master, tmp_path, [app])
    for args in (["show", "w"], ["show", "w", "--json"]):
        proc = cli(ctl, *args)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stdout, args
        assert "abc@" not in proc.stdout
        assert "production" in proc.stdout
