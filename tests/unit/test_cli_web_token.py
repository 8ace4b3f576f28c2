"""`--web` beyond loopback needs a token or an explicit `--web-insecure` (#13, fault 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.run import check_web_exposure, parse_run_args
from runtime.errors import UsageError
from runtime.observe.webspec import is_loopback

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    """Loopback is a 127/8 or ::1 literal, or `localhost`; anything else reaches other hosts."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    "argv",
    [
        ["eco.yml", "--web", "9615"],
        ["eco.yml", "--web", "127.0.0.1:9615"],
        ["eco.yml", "--web", "0.0.0.0:9615", "--web-token", "s3cret"],
        ["eco.yml", "--web", "0.0.0.0:9615", "--web-insecure"],
        ["eco.yml", "--web", "[::]:9615", "--web-insecure"],
    ],
)
def test_web_exposure_allowed(argv: list[str]) -> None:
    """Loopback, a token, or --web-insecure: the run command goes ahead."""
    check_web_exposure(parse_run_args(argv, environ={}))


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["eco.yml", "--web", "0.0.0.0:9615"], {}),
        (["eco.yml", "--web", "[::]:9615"], {}),
        (["eco.yml", "--web", "10.1.2.3:80", "--web-token", ""], {}),
        (["eco.yml", "--web", "0.0.0.0:9615"], {"RUNTIME_WEB_TOKEN": ""}),
    ],
)
def test_web_exposure_refused(argv: list[str], environ: dict[str, str]) -> None:
    """A non-loopback --web without a (non-empty) token is a usage error naming the way out."""
    with pytest.raises(UsageError, match="--web-token") as info:
        check_web_exposure(parse_run_args(argv, environ=environ))
    assert "--web-insecure" in str(info.value)


def test_the_run_command_refuses_in_one_line(tmp_path: Path) -> None:
    """`runtime eco.json --web 0.0.0.0:PORT` with no token exits 2 with one line, starting nothing."""
    eco = tmp_path / "eco.json"
    eco.write_text('{"apps": [{"name": "w", "script": "sleep", "args": ["30"]}]}')
    env = {k: v for k, v in os.environ.items() if k != "RUNTIME_WEB_TOKEN"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            str(eco),
            "--web",
            "0.0.0.0:9",
            "--control",
            str(tmp_path / "c.sock"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("runtime: --web 0.0.0.0:9")
    assert proc.stdout == ""
