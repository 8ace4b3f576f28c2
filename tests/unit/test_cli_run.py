"""The run command's arguments: what argparse makes of the usual lines, and its errors."""

from __future__ import annotations

import pytest

from runtime.cli.run import RunArgs, event_loop_choice, is_ecosystem, loader, parse_run_args
from runtime.errors import UsageError

ENV = {"RUNTIME_WEB_TOKEN": "from-env"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["eco.yml"], RunArgs("eco.yml", web_token="from-env")),
        (
            ["eco.yml", "--env", "prod", "--only", "web,worker"],
            RunArgs("eco.yml", env_name="prod", only="web,worker", web_token="from-env"),
        ),
        (
            ["app.py", "-i", "4", "--name", "web", "--env-var", "A=1", "--env-var", "B=2"],
            RunArgs(
                "app.py",
                keys={"instances": "4", "name": "web"},
                env_var=["A=1", "B=2"],
                web_token="from-env",
            ),
        ),
        (
            ["--name", "web", "app.py", "a1", "-i", "max", "a2"],
            RunArgs(
                "app.py",
                ["a1", "a2"],
                keys={"name": "web", "instances": "max"},
                web_token="from-env",
            ),
        ),
        (
            ["app.py", "--", "--port", "80", "-v"],
            RunArgs("app.py", ["--port", "80", "-v"], web_token="from-env"),
        ),
        (
            ["eco.yml", "--web", "9000", "--web-token", "t", "--shutdown-delay", "2.5"],
            RunArgs("eco.yml", web="9000", web_token="t", shutdown_delay=2.5),
        ),
    ],
    ids=["file", "env-only", "direct", "intermixed", "after-dashdash", "web"],
)
def test_usual_lines(argv: list[str], expected: RunArgs) -> None:
    """Everyday command lines mean what they say, options before or after positionals."""
    assert parse_run_args(argv, ENV) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eco.yml", "--log-format", "xml"], "invalid choice: 'xml'"),
        (["eco.yml", "--shutdown-delay", "soon"], "invalid float value"),
        (["eco.yml", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: target"),
    ],
    ids=["choice", "float", "unknown", "no-target"],
)
def test_bad_lines_are_usage_errors(argv: list[str], message: str) -> None:
    """A bad line is one UsageError line (exit 2 from the CLI), never an argparse exit."""
    with pytest.raises(UsageError, match=message):
        parse_run_args(argv, ENV)


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("ecosystem.config.yml", True),
        ("ecosystem.config.js", True),
        ("Procfile", True),
        ("dev.procfile", True),
        ("app.py", False),
        ("server.js", False),
    ],
)
def test_is_ecosystem(target: str, expected: bool) -> None:
    """An ecosystem file is told from a script by its name alone."""
    assert is_ecosystem(target) is expected


def test_event_loop_choice() -> None:
    """uvloop by default, `RUNTIME_LOOP=asyncio` opts out, anything else is a usage error."""
    assert event_loop_choice({}) == "uvloop"
    assert event_loop_choice({"RUNTIME_LOOP": "asyncio"}) == "asyncio"
    with pytest.raises(UsageError, match="RUNTIME_LOOP must be one of uvloop, asyncio"):
        event_loop_choice({"RUNTIME_LOOP": "trio"})


@pytest.mark.parametrize(
    ("argv", "keys"),
    [
        (["app.js", "--max-memory-restart", "100M"], {"max_memory_restart": "100M"}),
        (["app.js", "--restart-delay", "100"], {"restart_delay": "100"}),
        (["app.js", "--exp-backoff-restart-delay", "100"], {"exp_backoff_restart_delay": "100"}),
        (["app.js", "--no-autorestart"], {"autorestart": False}),
        (["app.js", "--no-autostart"], {"autostart": False}),
        (["app.js", "--stop-exit-codes", "0", "3"], {"stop_exit_codes": ["0", "3"]}),
        (
            ["app.js", "--node-args=--max-old-space-size=256"],
            {"interpreter_args": "--max-old-space-size=256"},
        ),
        (["app.js", "-c", "0 3 * * *"], {"cron_restart": "0 3 * * *"}),
        (["app.js", "-n", "api"], {"name": "api"}),
        (["app.js", "--watch"], {"watch": True}),
    ],
    ids=lambda v: v[1] if isinstance(v, list) else None,
)
def test_pm2_start_flags_are_ecosystem_keys(argv: list[str], keys: dict[str, object]) -> None:
    """The lesson's pm2 flags reach the direct form's app as the ecosystem keys they name."""
    assert parse_run_args(argv, ENV).keys == keys


@pytest.mark.parametrize(
    ("flag", "fmt"),
    [("--json", "pm2"), ("--raw", "raw"), ("--format", "logfmt"), ("--formatted", "pretty")],
)
def test_pm2_runtime_output_flags(flag: str, fmt: str) -> None:
    """pm2-runtime's output flags choose the log format."""
    assert parse_run_args(["eco.yml", flag], ENV).log_format == fmt


def test_web_without_a_port_is_pm2_runtimes_9615() -> None:
    """`--web` alone serves on 9615, as pm2-runtime's does."""
    assert parse_run_args(["--web", "--", "app.js"], ENV).web == "9615"
    assert parse_run_args(["app.js", "--web", "8080"], ENV).web == "8080"


@pytest.mark.parametrize(
    "flag", ["--secret", "--public", "--machine-name", "--trace", "--v8", "--deep-monitoring"]
)
def test_pm2_io_flags_are_refused_with_why(flag: str) -> None:
    """pm2.io's flags are refused with one line that says why (exit 2 from the CLI)."""
    with pytest.raises(UsageError, match=r"pm2\.io monitoring is not part of this runtime"):
        parse_run_args(["app.js", flag], ENV)


def test_log_file_flags_have_no_effect_with_a_warning() -> None:
    """`--output` and `--error` are accepted (drop-in), and reported as having no effect."""
    ns = parse_run_args(["app.js", "--output", "/dev/null", "--error", "/dev/null"], ENV)
    assert ns.ignored == [
        "--output has no effect here: logs go to stdout",
        "--error has no effect here: logs go to stdout",
    ]


def test_direct_form_flags_with_a_file_are_refused() -> None:
    """`-i 3` beside an ecosystem file is a usage error, not silently ignored."""
    with pytest.raises(UsageError, match="--instances applies to a script"):
        loader(parse_run_args(["eco.yml", "-i", "3"], ENV))


def test_empty_only_is_a_usage_error() -> None:
    """`--only ''` would run every app: it is refused instead."""
    with pytest.raises(UsageError, match="--only expects app names, got ''"):
        loader(parse_run_args(["eco.yml", "--only", ""], ENV))
