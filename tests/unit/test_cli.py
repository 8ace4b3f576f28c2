"""The command line as users see it: --help snapshot, --version, usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtime import __version__
from runtime.cli.main import main

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(ROOT), COLUMNS="100", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=full,
    )


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11),
    reason="argparse lays help out differently in other versions; the snapshot is 3.11's",
)
def test_help_matches_the_snapshot() -> None:
    """`--help` is pinned by docs/cli-help.txt (regenerate it when the CLI changes)."""
    proc = run("--help")
    assert proc.returncode == 0
    assert proc.stdout == (ROOT / "docs" / "cli-help.txt").read_text()


def test_version() -> None:
    """`--version` prints the package version and exits 0."""
    proc = run("--version")
    assert (proc.returncode, proc.stdout.strip()) == (0, f"runtime {__version__}")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--log-format", "xml", "x.yml"], "invalid choice: 'xml'"),
        (["eco.yml", "extra"], "unexpected arguments after an ecosystem file: extra"),
        (["app.py", "--env-var", "NOPE"], "--env-var expects KEY=VALUE, got 'NOPE'"),
        (["app.py", "--shutdown-delay", "inf"], "--shutdown-delay expects 0 to 3600 seconds"),
        (["app.py", "--shutdown-delay=-1"], "--shutdown-delay expects 0 to 3600 seconds"),
    ],
    ids=["bad-format", "extra-args", "bad-env-var", "infinite-delay", "negative-delay"],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A usage mistake is one line on stderr and exit code 2."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert message in err[0]


def test_check_prints_resolved_apps_with_secrets_masked(tmp_path: Path) -> None:
    """`check FILE` validates and prints every app, secrets masked, exit 0."""
    (tmp_path / "eco.yml").write_text(
        "apps:\n  - name: api\n    script: sleep 1\n    env: {DB_PASSWORD: hunter2, MODE: x}\n"
    )
    proc = run("check", "eco.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "api" in proc.stdout
    assert "MODE=x" in proc.stdout
    assert "hunter2" not in proc.stdout


def test_check_of_a_bad_file_exits_78(tmp_path: Path) -> None:
    """`check` of a broken file prints the one-line error and exits 78."""
    (tmp_path / "eco.yml").write_text(
        "apps:\n  - name: api\n    script: sleep 1\n    instances: lots\n"
    )
    proc = run("check", "eco.yml", cwd=tmp_path)
    assert proc.returncode == 78
    assert proc.stderr.strip().startswith("runtime: eco.yml: apps[0] (api).instances: expected")


@pytest.mark.slow
def test_installed_wheel_runs(tmp_path: Path) -> None:
    """The built wheel installs on its own and `python -m runtime --version` works from it."""
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("runtime-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "runtime/__main__.py" in names
    assert not any(n.startswith("tests/") for n in names)
    for part in ("html", "css", "js"):  # the dashboard page's parts (package data)
        assert f"runtime/observe/static/dashboard.{part}" in names
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=dict(env, PYTHONPATH=str(target)),
    )
    assert proc.stdout.strip() == f"runtime {__version__}"
    assert (
        str(target)
        in subprocess.run(
            [sys.executable, "-c", "import runtime; print(runtime.__file__)"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
            env=dict(env, PYTHONPATH=str(target)),
        ).stdout
    )


@pytest.mark.parametrize("verb", ["restart", "reload"])
@pytest.mark.parametrize("flag", ["-a", "--update-env"])
def test_update_env_has_pm2s_short_flag(verb: str, flag: str) -> None:
    """`restart NAME -a` is pm2's `--update-env` (`-a <=> apply`)."""
    from runtime.control.commands import build_parser

    ns = build_parser().parse_args([verb, "web", flag])
    assert (ns.target, ns.update_env, ns.env_name) == ("web", True, None)


def test_shutdown_delay_defaults_from_the_environment() -> None:
    """$RUNTIME_SHUTDOWN_DELAY sets --shutdown-delay for every command line; the flag wins."""
    from runtime.cli.run import parse_run_args

    env = {"RUNTIME_SHUTDOWN_DELAY": "7.5"}
    assert parse_run_args(["eco.yml"], environ=env).shutdown_delay == 7.5
    assert parse_run_args(["eco.yml", "--shutdown-delay", "2"], environ=env).shutdown_delay == 2
    assert parse_run_args(["eco.yml"], environ={}).shutdown_delay == 0
    proc = run("eco.yml", env={"RUNTIME_SHUTDOWN_DELAY": "soon"})
    assert (proc.returncode, proc.stderr) == (
        2,
        "runtime: $RUNTIME_SHUTDOWN_DELAY expects a number of seconds, got 'soon'\n",
    )
