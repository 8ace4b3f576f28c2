"""The version and user `list` shows (runtime.observe.identity), read from real files."""

from __future__ import annotations

import dataclasses
import json
import os
import pwd
from pathlib import Path

import pytest

from runtime.config.load import load_ecosystem
from runtime.config.spec import AppSpec, RunAs
from runtime.errors import ConfigError
from runtime.observe.identity import (
    MAX_FILE_BYTES,
    app_user,
    app_version,
    files_version,
    package_json_version,
    pyproject_version,
)


def spec_in(tmp_path: Path, **keys: object) -> AppSpec:
    """The app of a one-app ecosystem in `tmp_path`, as the loader builds it."""
    app = {"name": "web", "script": "python3", "args": ["-c", "pass"], **keys}
    (tmp_path / "eco.json").write_text(json.dumps({"apps": [app]}))
    return load_ecosystem(str(tmp_path / "eco.json")).apps[0]


POETRY = '[tool.poetry]\nname = "x"\nversion = "0.9.1"\n'
PEP621 = '[project]\nname = "x"\nversion = "2.0.0"\n[tool.poetry]\nversion = "0.9.1"\n'


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"package.json": '{"name": "x", "version": "1.4.2"}'}, "1.4.2"),
        ({"pyproject.toml": PEP621}, "2.0.0"),
        ({"pyproject.toml": POETRY}, "0.9.1"),
        ({"package.json": '{"version": "1.4.2"}', "pyproject.toml": PEP621}, "1.4.2"),
        ({"package.json": '{"name": "no version"}', "pyproject.toml": POETRY}, "0.9.1"),
        ({"pyproject.toml": '[project]\nname = "x"\ndynamic = ["version"]\n'}, None),
        ({}, None),
    ],
    ids=["package.json", "pep621", "poetry", "package-first", "fallback", "dynamic", "none"],
)
def test_version_from_the_files_next_to_the_app(
    tmp_path: Path, files: dict[str, str], expected: str | None
) -> None:
    """package.json, else pyproject.toml's [project], else [tool.poetry]; none is None."""
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert files_version(str(tmp_path)) == expected
    assert app_version(spec_in(tmp_path)) == expected


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("package.json", b"{not json"),
        ("package.json", b"[1, 2]"),
        ("package.json", b'{"version": 3}'),
        ("package.json", b'{"version": "  "}'),
        ("package.json", b"[" * 100_000),
        ("package.json", b'{"version": "\xff\xfe"}'),
        ("pyproject.toml", b"[project\nversion = 1"),
        ("pyproject.toml", b'project = "flat"\ntool = 3\n'),
        ("pyproject.toml", b"[tool]\npoetry = [1]\n"),
        ("pyproject.toml", b'[project]\nversion = ["1"]\n'),
    ],
    ids=[
        "bad-json",
        "json-list",
        "number",
        "blank",
        "deep",
        "not-utf8",
        "bad-toml",
        "flat",
        "poetry-list",
        "version-list",
    ],
)
def test_a_malformed_file_is_no_version(tmp_path: Path, name: str, text: bytes) -> None:
    """A file that does not parse or has no string version counts as none, no exception."""
    (tmp_path / name).write_bytes(text)
    assert files_version(str(tmp_path)) is None


def test_the_version_key_wins_over_the_files(tmp_path: Path) -> None:
    """`version:` in the ecosystem is what `list` shows, whatever package.json says."""
    (tmp_path / "package.json").write_text('{"version": "1.4.2"}')
    assert app_version(spec_in(tmp_path, version="2026.11-rc1")) == "2026.11-rc1"
    assert app_version(spec_in(tmp_path, version=3)) == "3"  # a YAML number is text


def test_a_bad_version_key_is_a_config_error(tmp_path: Path) -> None:
    """`version: ""` or a list is a one-line config error naming the key."""
    for bad in ("", ["1"]):
        with pytest.raises(ConfigError, match=r"apps\[0\] \(web\)\.version: expected a non-empty"):
            spec_in(tmp_path, version=bad)


def test_a_changed_file_is_read_again(tmp_path: Path) -> None:
    """A deploy that rewrites package.json shows its new version (mtime/size cache key)."""
    package = tmp_path / "package.json"
    package.write_text('{"version": "1.0.0"}')
    assert files_version(str(tmp_path)) == "1.0.0"
    package.write_text('{"version": "1.0.10"}')
    os.utime(package, ns=(1, 1))  # a different mtime even on a coarse clock
    assert files_version(str(tmp_path)) == "1.0.10"


def test_a_huge_or_unreadable_file_is_no_version(tmp_path: Path) -> None:
    """Over MAX_FILE_BYTES, a directory named package.json, or a NUL in cwd: none."""
    (tmp_path / "package.json").write_text('{"version": "1"}' + " " * MAX_FILE_BYTES)
    assert files_version(str(tmp_path)) is None
    other = tmp_path / "d"
    (other / "package.json").mkdir(parents=True)
    assert files_version(str(other)) is None
    assert files_version("/no\0where") is None


def test_pure_parsers_take_bytes() -> None:
    """The two parsers read the file's bytes: strings are stripped, the rest refused."""
    assert package_json_version(b'{"version": " 1.2.3 "}') == "1.2.3"
    assert pyproject_version(b'[project]\nversion = "4"\n') == "4"
    assert pyproject_version(b"\x00") is None


def test_user_is_the_run_as_user_else_the_master(tmp_path: Path) -> None:
    """An app with `uid`/`user` shows that user; any other app the master's own user."""
    spec = spec_in(tmp_path)
    assert app_user(spec) == pwd.getpwuid(os.getuid()).pw_name
    other = dataclasses.replace(spec, run_as=RunAs("nobody", 65534, 65534, "/nonexistent"))
    assert app_user(other) == "nobody"
