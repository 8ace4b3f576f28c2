"""/health's decision, the dashboard's state words and --web parsing, as plain data (no
processes, no sockets)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from runtime.errors import ConfigError
from runtime.observe.health import app_state, health, runtime_state
from runtime.observe.webspec import parse_web_spec
from runtime.policy.lifecycle import AppStatus

ONLINE, LAUNCHING, ERRORED = AppStatus.ONLINE, AppStatus.LAUNCHING, AppStatus.ERRORED
STOPPED, WAITING = AppStatus.STOPPED, AppStatus.WAITING_RESTART
STOPPING = AppStatus.STOPPING


def slot(status: AppStatus, *, alive: bool = True, manual_stop: bool = False) -> Any:
    worker = SimpleNamespace(alive=alive) if status in (ONLINE, LAUNCHING) else None
    return SimpleNamespace(status=status, worker=worker, manual_stop=manual_stop)


def app(name: str, *slots: Any, reloading: bool = False) -> Any:
    return SimpleNamespace(
        spec=SimpleNamespace(name=name), slots=dict(enumerate(slots)), reloading=reloading
    )


@pytest.mark.parametrize(
    ("apps", "draining", "expected"),
    [
        ([app("web", slot(ONLINE), slot(ONLINE))], False, (200, {"status": "ok"})),
        ([app("web", slot(ONLINE))], True, (503, {"status": "draining"})),
        (
            [app("web", slot(ONLINE), slot(LAUNCHING))],
            False,
            (503, {"status": "starting", "apps": {"web": "starting"}}),
        ),
        (
            [app("web", slot(ONLINE)), app("jobs", slot(ERRORED))],
            False,
            (503, {"status": "errored", "apps": {"jobs": "errored"}}),
        ),
        (
            [app("web", slot(WAITING))],
            False,
            (503, {"status": "waiting restart", "apps": {"web": "waiting restart"}}),
        ),
        (
            [app("web", slot(ONLINE), slot(LAUNCHING), reloading=True)],
            False,
            (200, {"status": "ok"}),
        ),
        (
            [app("web", slot(LAUNCHING), reloading=True)],
            False,
            (503, {"status": "reloading", "apps": {"web": "reloading"}}),
        ),
        (
            [app("web", slot(ONLINE)), app("jobs", slot(STOPPED, manual_stop=True))],
            False,
            (200, {"status": "ok"}),
        ),
        (
            [app("web", slot(ONLINE, alive=False))],
            False,
            (503, {"status": "starting", "apps": {"web": "starting"}}),
        ),
    ],
    ids=[
        "all-online",
        "draining",
        "starting",
        "errored-wins",
        "waiting-restart",
        "reloading-with-one-ready",
        "reloading-none-ready",
        "stopped-by-hand-ignored",
        "online-but-dead",
    ],
)
def test_health(apps: list[Any], draining: bool, expected: tuple[int, dict[str, Any]]) -> None:
    """/health is 200 only when every app counts as up; the worst reason is reported first."""
    assert health(apps, draining) == expected


def test_health_imported_from_web_is_the_same() -> None:
    """`runtime.observe.web.health` stays importable where it was (it moved to `health`)."""
    from runtime.observe import web

    assert web.health is health


@pytest.mark.parametrize(
    ("app_", "expected"),
    [
        (app("web", slot(ONLINE), slot(ONLINE)), "ok"),
        (app("web"), "ok"),
        (app("web", slot(ONLINE), slot(LAUNCHING)), "starting"),
        (app("web", slot(ONLINE), slot(WAITING)), "waiting restart"),
        (app("web", slot(WAITING)), "waiting restart"),
        (app("web", slot(ONLINE), slot(LAUNCHING), reloading=True), "reloading"),
        (app("web", slot(ONLINE), slot(ERRORED)), "degraded"),
        (app("web", slot(ERRORED), slot(WAITING)), "down"),
        (app("web", slot(STOPPED)), "down"),
        (app("web", slot(ONLINE), slot(STOPPING)), "degraded"),
        (app("web", slot(STOPPED, manual_stop=True)), "stopped"),
        (app("web", slot(ONLINE), slot(STOPPED, manual_stop=True)), "ok"),
        (app("web", slot(ONLINE, alive=False)), "starting"),
    ],
    ids=[
        "all-online",
        "no-slots",
        "one-launching",
        "one-waiting",
        "only-waiting",
        "reloading",
        "one-errored",
        "errored-and-waiting",
        "ended-on-its-own",
        "one-stopping",
        "stopped-by-hand",
        "one-stopped-by-hand",
        "online-but-dead",
    ],
)
def test_app_state(app_: Any, expected: str) -> None:
    """A crash about to be retried is `waiting restart`; ended instances make an app
    `degraded` while others serve and `down` when none does; stops by hand are `stopped`."""
    assert app_state(app_) == expected


@pytest.mark.parametrize(
    ("states", "draining", "stopping", "expected"),
    [
        ([], False, False, "ok"),
        (["ok", "stopped"], False, False, "ok"),
        (["ok", "waiting restart", "starting"], False, False, "waiting restart"),
        (["reloading", "starting"], False, False, "starting"),
        (["waiting restart", "degraded"], False, False, "degraded"),
        (["degraded", "down", "ok"], False, False, "down"),
        (["ok"], True, False, "draining"),
        (["down"], True, True, "stopping"),
    ],
    ids=["none", "hand-stop-ignored", "waiting", "starting", "degraded", "down", "drain", "stop"],
)
def test_runtime_state(states: list[str], draining: bool, stopping: bool, expected: str) -> None:
    """The header's word is the worst app state, or the runtime's own stop."""
    assert runtime_state(states, draining=draining, stopping=stopping) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("9615", ("127.0.0.1", 9615)),
        (":9615", ("127.0.0.1", 9615)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9615", ("::1", 9615)),
    ],
    ids=["port", "colon-port", "host-port", "v6"],
)
def test_parse_web_spec(spec: str, expected: tuple[str, int]) -> None:
    """--web takes [HOST:]PORT and binds 127.0.0.1 unless told otherwise."""
    assert parse_web_spec(spec) == expected


@pytest.mark.parametrize(
    "spec", ["", "web", "1:99999", "[::1:80"], ids=["empty", "name", "big", "bracket"]
)
def test_parse_web_spec_rejects(spec: str) -> None:
    """A bad --web value is a one-line configuration error."""
    with pytest.raises(ConfigError, match=r"--web: expected \[HOST:\]PORT"):
        parse_web_spec(spec)
