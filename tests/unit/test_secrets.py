"""Secrets are masked by key name, in URLs and in command lines wherever specs are printed (#13, 11)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config.secrets import MASK, is_secret, mask_args, mask_command, mask_env, mask_value

ROOT = Path(__file__).resolve().parents[2]

SECRET_ENV = {
    "DATABASE_URL": "postgres://app:pg-s3cret-1@db:5432/app",
    "REDIS_URL": "redis://:rd-s3cret-2@cache:6379/0",
    "DB_PASS": "s3cret-3",
    "PASSWD": "s3cret-4",
    "SMTP_PWD": "s3cret-5",
    "CREDENTIALS": "s3cret-6",
    "AUTH": "s3cret-7",
    "JWT": "s3cret-8",
    "PRIVATE": "s3cret-9",
    "COOKIE_SALT": "s3cret-10",
    "JWT_SIGNING_ALG_SECRETISH": "s3cret-11",
    "DJANGO_SIGNING_BACKEND": "s3cret-12",
    "SENTRY_DSN": "https://abc@o1.ingest.sentry.io/1",
    "API_KEY": "s3cret-13",
    "GITHUB_TOKEN": "s3cret-14",
    "dbPassword": "s3cret-15",
}
PLAIN_ENV = {
    "NODE_ENV": "production",
    "PORT": "3000",
    "AUTHOR": "ann",
    "HOME_URL": "https://example.org/a@b",
}
SECRET_ARGS = [
    "--password=s3cret-16",
    "--token",
    "s3cret-17",
    "--db-url",
    "mysql://u:s3cret-18@h/db",
    "PGPASSWORD=s3cret-19",
    "-p",
    "8000",
]


@pytest.mark.parametrize("key", sorted(SECRET_ENV))
def test_secret_key_names(key: str) -> None:
    """Names with a secret marker as a word or inside a longer word are secret."""
    if key in ("DATABASE_URL", "REDIS_URL"):
        assert not is_secret(key)  # their values carry the secret: masked by mask_value
    else:
        assert is_secret(key)


@pytest.mark.parametrize("key", sorted(PLAIN_ENV))
def test_plain_key_names(key: str) -> None:
    """Ordinary names stay readable (AUTH must be a word: AUTHOR is not a secret)."""
    assert not is_secret(key)


def test_urls_lose_their_password_only() -> None:
    """`scheme://user:pass@host` keeps everything but the password."""
    assert mask_value("postgres://app:pw@db:5432/x") == f"postgres://app:{MASK}@db:5432/x"
    assert mask_value("redis://:pw@cache:6379") == f"redis://:{MASK}@cache:6379"
    assert mask_value("x=1 amqp://u:p@h/v y") == f"x=1 amqp://u:{MASK}@h/v y"
    assert mask_value("http://host:8080/a@b") == "http://host:8080/a@b"


def test_env_is_masked_by_name_and_by_url() -> None:
    """Every secret value of SECRET_ENV is gone; plain values stay."""
    masked = mask_env({**SECRET_ENV, **PLAIN_ENV})
    text = json.dumps(masked)
    assert "s3cret" not in text
    assert "abc@" not in text
    assert {k: masked[k] for k in PLAIN_ENV} == PLAIN_ENV
    assert masked["DATABASE_URL"] == f"postgres://app:{MASK}@db:5432/app"


def test_args_lose_secret_option_values() -> None:
    """`--password=x`, `--token x`, `NAME=x` with a secret name and URL passwords are masked."""
    assert mask_args(SECRET_ARGS) == [
        f"--password={MASK}",
        "--token",
        MASK,
        "--db-url",
        f"mysql://u:{MASK}@h/db",
        f"PGPASSWORD={MASK}",
        "-p",
        "8000",
    ]
    assert mask_args(["--no-auth", "--port", "80"]) == ["--no-auth", "--port", "80"]
    assert (
        mask_command("node app.js --api-key k3y --port 80")
        == f"node app.js --api-key {MASK} --port 80"
    )
    assert mask_command("/usr/bin/python") == "/usr/bin/python"


def test_check_and_check_json_print_no_secret(tmp_path: Path) -> None:
    """`check` and `check --json` show none of the secret values (env, args, script)."""
    eco = tmp_path / "eco.json"
    app = {
        "name": "w",
        "script": "sleep",
        "args": SECRET_ARGS,
        "interpreter_args": ["--auth-token=s3cret-20"],
        "env": {**SECRET_ENV, **PLAIN_ENV},
    }
    procfile = tmp_path / "Procfile"
    procfile.write_text("web: node server.js --secret s3cret-21\n")
    eco.write_text(json.dumps({"apps": [app]}))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in ([str(eco)], [str(eco), "--json"], [str(procfile)], [str(procfile), "--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", "check", *args],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stdout, args
        assert "abc@" not in proc.stdout
        assert "production" in proc.stdout or "Procfile" in args[0]
