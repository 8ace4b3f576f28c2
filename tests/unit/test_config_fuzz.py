"""Random ecosystem documents load into apps or fail with ConfigError, never anything else."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.cli.check import format_check
from runtime.config.keys import CANONICAL
from runtime.config.load import load_ecosystem
from runtime.errors import ConfigError

KEYS = st.sampled_from([*CANONICAL, "env_production", "env_", "apps", "instnaces", "", "pm2", "0"])
TEXT = st.one_of(
    st.sampled_from(
        [
            "sleep 1",
            "app.py",
            "max",
            "-1",
            "0",
            "5s",
            "200M",
            "fork",
            "cluster_mode",
            "reuseport",
            "/health",
            ":$PORT",
            "${PORT:-8000}",
            "${UNSET}",
            "$${X}",
            "true",
            "none",
            "'unterminated",
            ".",
            "/",
            "/nonexistent/x",
        ]
    ),
    st.text(max_size=12),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.one_of(KEYS, TEXT), inner, max_size=4)
    ),
    max_leaves=12,
)
APP = st.one_of(
    st.dictionaries(KEYS, VALUES, max_size=8).map(lambda d: {"script": "sleep 1", **d}),
    st.dictionaries(KEYS, VALUES, max_size=8),
    VALUES,
)
DOCUMENT = st.one_of(
    st.fixed_dictionaries({"apps": st.lists(APP, max_size=4)}),
    st.lists(APP, max_size=4),
    APP,
    st.dictionaries(st.one_of(KEYS, TEXT), VALUES, max_size=3),
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a real app.py so some documents resolve fully."""
    path = tmp_path_factory.mktemp("fuzz")
    (path / "app.py").write_text("", encoding="utf-8")
    return path


def _dump(doc: object, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(doc)
    return yaml.safe_dump(doc, allow_unicode=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc=DOCUMENT,
    fmt=st.sampled_from(["yml", "json"]),
    env_name=st.sampled_from([None, "production", ""]),
    only=st.sampled_from([None, ["app"], ["sleep", "app"], [""]]),
)
def test_random_documents_load_or_raise_config_error(
    workdir: Path, doc: object, fmt: str, env_name: str | None, only: list[str] | None
) -> None:
    """Whatever the document, load_ecosystem returns apps or raises ConfigError."""
    path = workdir / f"eco.{fmt}"
    path.write_text(_dump(doc, fmt), encoding="utf-8")
    environ = {"PATH": "/usr/bin:/bin", "PORT": "4000"}
    try:
        eco = load_ecosystem(str(path), env_name=env_name, only=only, environ=environ)
    except ConfigError as exc:
        error: ConfigError | None = exc
    else:
        error = None
        assert eco.apps
        assert all(isinstance(w, str) for w in eco.warnings)
        format_check(eco)
    assert error is None or "\n" not in str(error)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200), fmt=st.sampled_from(["yml", "json", "toml", "procfile"]))
def test_random_text_loads_or_raises_config_error(workdir: Path, text: str, fmt: str) -> None:
    """Arbitrary text in any format is either a valid file or a ConfigError."""
    path = workdir / f"junk.{fmt}"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with contextlib.suppress(ConfigError):
        load_ecosystem(str(path), environ={"PATH": "/usr/bin:/bin"})
