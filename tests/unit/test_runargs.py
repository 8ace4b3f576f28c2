"""The run command's fast argument path agrees with argparse wherever it answers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.cli.options import RunArgs, build_parser, fast_parse, parse_run_args
from runtime.errors import UsageError

ENV = {"RUNTIME_WEB_TOKEN": "from-env"}


def by_argparse(argv: list[str]) -> RunArgs | str:
    """What argparse makes of `argv`: the arguments, or 'error' / 'exit'."""
    try:
        ns = build_parser(ENV).parse_intermixed_args(argv)
    except UsageError:
        return "error"
    except SystemExit:
        return "exit"
    return RunArgs(**vars(ns))


@pytest.mark.parametrize(
    "argv",
    [
        ["eco.yml"],
        ["eco.yml", "--env", "prod", "--only", "web,worker"],
        ["eco.yml", "--log-format=json", "--no-auto-exit", "--control", "/tmp/c.sock"],
        ["eco.yml", "--web", "9000", "--web-token", "t", "--shutdown-delay", "2.5"],
        ["eco.yml", "--socket-sharing", "shared"],
        ["app.py", "-i", "4", "--name", "web", "--env-var", "A=1", "--env-var", "B=2"],
        ["app.py", "-x", "cluster", "--interpreter", "python3", "--watch"],
        ["--name", "web", "app.py", "a1", "-i", "max", "a2"],
        ["app.py", "--", "--port", "80", "-v"],
        ["app.py", "--name="],
    ],
)
def test_common_lines_take_the_fast_path_and_agree(argv: list[str]) -> None:
    """Everyday command lines never build the argparse parser, and mean the same."""
    fast = fast_parse(argv, ENV)
    assert fast is not None
    assert fast == by_argparse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["-h"],
        ["--version"],
        ["eco.yml", "--inst", "4"],  # an abbreviation
        ["app.py", "-i4"],
        ["app.py", "--shutdown-delay", "-1"],
        ["eco.yml", "--log-format", "xml"],
        ["eco.yml", "--shutdown-delay", "soon"],
        ["eco.yml", "--env"],
        ["eco.yml", "--watch=yes"],
        ["app.py", "--", "a", "--", "b"],
        ["-"],
    ],
)
def test_unusual_lines_are_left_to_argparse(argv: list[str]) -> None:
    """Anything the fast path does not read exactly goes to argparse."""
    assert fast_parse(argv, ENV) is None


def test_parse_run_args_reports_argparse_errors() -> None:
    """A bad line still gets argparse's one-line error, as a UsageError."""
    with pytest.raises(UsageError, match="invalid choice: 'xml'"):
        parse_run_args(["eco.yml", "--log-format", "xml"], ENV)


def test_web_token_defaults_to_the_environment() -> None:
    """Both paths take --web-token's default from RUNTIME_WEB_TOKEN."""
    fast = fast_parse(["eco.yml"], ENV)
    assert fast is not None
    assert fast.web_token == "from-env"
    assert by_argparse(["eco.yml", "-x", "fork", "--inst", "2"]).web_token == "from-env"  # type: ignore[union-attr]


WORDS = st.sampled_from(
    [
        "eco.yml",
        "app.py",
        "x",
        "",
        "-",
        "--",
        "-1",
        "4",
        "max",
        "A=1",
        "json",
        "xml",
        "shared",
        "fork",
        "cluster",
        "2.5",
        "nan",
        "--env",
        "--only",
        "--log-format",
        "--log-format=pm2",
        "--no-auto-exit",
        "--no-auto-exit=1",
        "--control",
        "--socket-sharing",
        "--web",
        "--web=8080",
        "--web-token",
        "--shutdown-delay",
        "--shutdown-delay=1e3",
        "-i",
        "--instances",
        "--inst",
        "--name",
        "--name=",
        "--env-var",
        "--env-var=K=V",
        "--interpreter",
        "-x",
        "--exec-mode",
        "--watch",
        "-i4",
        "-h",
        "--version",
        "--bogus",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(WORDS, max_size=8))
def test_fast_path_never_disagrees_with_argparse(argv: list[str]) -> None:
    """On random lines, the fast path either gives up or gives argparse's exact answer."""
    fast = fast_parse(argv, ENV)
    if fast is not None:
        assert repr(fast) == repr(by_argparse(argv))  # repr: nan is not equal to itself


def test_the_fast_path_imports_no_argparse() -> None:
    """The point of the fast path: a plain command line costs no argparse import."""
    code = (
        "import sys; from runtime.cli.options import parse_run_args; "
        "parse_run_args(['eco.yml', '--env', 'prod', '-i', '2']); "
        "print(sorted({'argparse', 'gettext', 'shutil'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "[]"
