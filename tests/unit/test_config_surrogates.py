"""A lone surrogate in an ecosystem file is a one-line config error, not a traceback (#13, 11).

JSON (and a JS file's JSON) can carry `\\ud800`, which no process can receive: it crashed
`check` and crash-looped the worker with exit 127.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.config.values import (
    BadValue,
    parse_env,
    parse_health,
    parse_text,
    parse_texts,
    parse_words,
)

ROOT = Path(__file__).resolve().parents[2]
BAD = "x\ud800"


@pytest.mark.parametrize(
    ("parse", "value"),
    [
        (parse_text, BAD),
        (parse_texts, ["ok", BAD]),
        (parse_words, [BAD]),
        (parse_words, f"a {BAD}"),
        (parse_env, {"A": BAD}),
        (parse_env, {BAD: "v"}),
        (parse_health, "/h" + BAD),
    ],
    ids=[
        "text",
        "texts",
        "words-list",
        "words-string",
        "env-value",
        "env-key",
        "health",
    ],
)
def test_parsers_refuse_surrogates(parse: object, value: object) -> None:
    """Every text parser refuses a string that is not valid Unicode text."""
    with pytest.raises(BadValue, match="UTF-8"):
        parse(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("app", "key"),
    [
        ('"script": "sleep", "args": ["1\\ud800"]', "args"),
        ('"script": "sleep", "args": "1 \\udc80"', "args"),
        ('"script": "sleep", "env": {"A": "x\\ud800"}', "env"),
        ('"script": "sleep", "env": {"A\\ud800": "x"}', "env"),
        ('"script": "sleep\\ud800"', "script"),
        ('"script": "sleep", "interpreter_args": ["\\udfff"]', "interpreter_args"),
    ],
    ids=["args", "args-string", "env-value", "env-key", "script", "interpreter-args"],
)
def test_check_refuses_a_surrogate_in_one_line(tmp_path: Path, app: str, key: str) -> None:
    """`check` on a JSON file with `\\ud800` in env, keys or args: exit 78 and one line."""
    eco = tmp_path / "eco.json"
    eco.write_text('{"apps": [{"name": "w", ' + app + "}]}")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "check", str(eco)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 78, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    # a script is looked up first: that it is not there is the one line then
    expected = "" if key == "script" else " expected UTF-8 text"
    assert f"(w).{key}:{expected}" in lines[0]
