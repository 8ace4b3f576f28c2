"""The run command's arguments: what argparse makes of the usual lines, and its errors."""

from __future__ import annotations

import pytest

from runtime.cli.run import RunArgs, event_loop_choice, is_ecosystem, parse_run_args
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
                "app.py", instances="4", name="web", env_var=["A=1", "B=2"], web_token="from-env"
            ),
        ),
        (
            ["--name", "web", "app.py", "a1", "-i", "max", "a2"],
            RunArgs("app.py", ["a1", "a2"], name="web", instances="max", web_token="from-env"),
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
