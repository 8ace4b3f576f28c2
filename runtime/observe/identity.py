"""What `list` says an app is beyond its processes: its version and the user it runs as.

The version is the app's `version:` key, else the `version` of the `package.json` next to
it, else of its `pyproject.toml` (`[project]`, then Poetry's `[tool.poetry]`), as pm2
reads `package.json`. The files are read when listed and read again when they change
(their size or mtime), so a deploy shows its new version without a restart of the master.
A missing, unreadable or malformed file counts as no version, never as an error.
"""

from __future__ import annotations

import json
import os
import pwd
import tomllib
from functools import lru_cache

from runtime.config.spec import AppSpec

PACKAGE_FILES = ("package.json", "pyproject.toml")
MAX_FILE_BYTES = 1 << 20  # a package file larger than this is not read (1 MiB)


def app_version(spec: AppSpec) -> str | None:
    """The `version:` key, else the version in the app's package files, else None."""
    if spec.version is not None:
        return spec.version
    return files_version(spec.cwd)


def files_version(cwd: str) -> str | None:
    """The version of `cwd`'s package.json, else of its pyproject.toml, else None."""
    for name in PACKAGE_FILES:
        path = os.path.join(cwd, name)
        try:
            st = os.stat(path)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            continue
        version = _read_version(path, st.st_mtime_ns, st.st_size)
        if version is not None:
            return version
    return None


@lru_cache(maxsize=256)
def _read_version(path: str, mtime_ns: int, size: int) -> str | None:
    """One file's version; cached per (path, mtime, size), so a changed file is read again."""
    if size > MAX_FILE_BYTES:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if path.endswith(".json"):
        return package_json_version(data)
    return pyproject_version(data)


def package_json_version(data: bytes) -> str | None:
    """`version` of a package.json's text, or None if there is none or it is not JSON."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return _text(doc.get("version")) if isinstance(doc, dict) else None


def pyproject_version(data: bytes) -> str | None:
    """`[project] version`, else `[tool.poetry] version`, of a pyproject.toml's text."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # TOMLDecodeError and UnicodeDecodeError are
        return None
    project = doc.get("project")
    if isinstance(project, dict) and (version := _text(project.get("version"))):
        return version
    tool = doc.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    return _text(poetry.get("version")) if isinstance(poetry, dict) else None


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def app_user(spec: AppSpec) -> str:
    """The user the app's workers run as: its `uid`/`user` setting, else the master's."""
    return spec.run_as.user if spec.run_as is not None else master_user()


@lru_cache(maxsize=1)
def master_user() -> str:
    """The master's user name (its uid as text when the password database has none)."""
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
