"""The dashboard API's decisions (runtime.observe.api) as plain data: paths, `n`, origins."""

from __future__ import annotations

from typing import Any

import pytest

from runtime.observe.api import (
    ApiError,
    Call,
    check_origin,
    host_name,
    parse_call,
    query_value,
    reply_body,
)

APPS = {"web", "my app", "a/b"}


@pytest.mark.parametrize(
    ("path", "query", "expected"),
    [
        ("/api/apps/web/restart", "", Call("web", "restart", {})),
        ("/api/apps/web/reload", "n=3", Call("web", "reload", {})),
        ("/api/apps/my%20app/stop", "", Call("my app", "stop", {})),
        ("/api/apps/a%2Fb/start", "", Call("a/b", "start", {})),
        ("/api/apps/web/scale", "n=+1", Call("web", "scale", {"n": "+1"})),
        ("/api/apps/web/scale", "n=%2B2", Call("web", "scale", {"n": "+2"})),
        ("/api/apps/web/scale", "token=x&n=-1", Call("web", "scale", {"n": "-1"})),
        ("/api/apps/web/scale", "n=3", Call("web", "scale", {"n": "3"})),
    ],
    ids=["restart", "n-ignored", "space", "slash", "plus", "encoded-plus", "minus", "absolute"],
)
def test_parse_call(path: str, query: str, expected: Call) -> None:
    """A known app and verb become a Call; `?n=+1` keeps its plus (not read as a space)."""
    assert parse_call(path, query, APPS) == expected


@pytest.mark.parametrize(
    ("path", "query", "code", "message"),
    [
        ("/api/apps/web", "", 404, "expected /api/apps/<name>/<verb>"),
        ("/api/apps/web/restart/now", "", 404, "expected /api/apps/<name>/<verb>"),
        ("/api/apps//restart", "", 404, "expected /api/apps/<name>/<verb>"),
        ("/api/other", "", 404, "not found"),
        ("/api/apps/web/explode", "", 404, "unknown verb 'explode'"),
        ("/api/apps/web/delete", "", 404, "unknown verb 'delete'"),
        ("/api/apps/nope/restart", "", 404, "unknown app 'nope'"),
        ("/api/apps/web/scale", "", 400, "scale needs ?n="),
        ("/api/apps/web/scale", "n=lots", 400, "expected N, +N or -N"),
        ("/api/apps/web/scale", "n=", 400, "expected N, +N or -N"),
        ("/api/apps/web/scale", "n=99999999", 400, "expected at most"),
    ],
    ids=[
        "no-verb",
        "too-long",
        "empty-name",
        "not-apps",
        "bad-verb",
        "delete-not-offered",
        "bad-app",
        "no-n",
        "word-n",
        "empty-n",
        "huge-n",
    ],
)
def test_parse_call_refuses(path: str, query: str, code: int, message: str) -> None:
    """Unknown paths, verbs and apps are 404; a missing or bad `n` is 400, in one line."""
    with pytest.raises(ApiError) as caught:
        parse_call(path, query, APPS)
    assert caught.value.code == code
    assert message in caught.value.message
    assert "\n" not in caught.value.message


def test_query_value_first_match_decoded() -> None:
    """The first value of a key, percent-decoded; a missing key is None."""
    assert query_value("a=1&n=%2D1&n=5", "n") == "-1"
    assert query_value("a=1", "n") is None
    assert query_value("", "n") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("127.0.0.1:9615", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:9615", "::1"),
        ("[::1]", "::1"),
        ("example.com:80", "example.com"),
    ],
)
def test_host_name(header: str, expected: str) -> None:
    """The name part of a Host header, IPv6 brackets removed."""
    assert host_name(header) == expected


@pytest.mark.parametrize(
    ("headers", "token_set", "bound", "refused"),
    [
        ({"host": "127.0.0.1:9615"}, False, "127.0.0.1", False),
        ({"host": "127.0.0.1:9615", "origin": "http://127.0.0.1:9615"}, False, "127.0.0.1", False),
        ({"host": "localhost:9615", "origin": "http://LOCALHOST:9615"}, False, "127.0.0.1", False),
        ({"host": "127.0.0.1:9615", "origin": "http://evil.example"}, True, "127.0.0.1", True),
        ({"host": "127.0.0.1:9615", "origin": "http://127.0.0.1:9616"}, True, "127.0.0.1", True),
        ({"host": "127.0.0.1:9615", "origin": "https://127.0.0.1:9615"}, True, "127.0.0.1", True),
        ({"host": "127.0.0.1:9615", "origin": "null"}, True, "127.0.0.1", True),
        ({"origin": "http://127.0.0.1:9615"}, True, "127.0.0.1", True),
        ({"host": "evil.example:9615"}, False, "127.0.0.1", True),
        ({"host": "evil.example:9615", "origin": "http://evil.example:9615"}, False, "::1", True),
        ({"host": "evil.example:9615"}, True, "127.0.0.1", False),
        ({"host": "box.lan:9615", "origin": "http://box.lan:9615"}, False, "0.0.0.0", False),
        ({}, False, "127.0.0.1", True),
    ],
    ids=[
        "no-origin",
        "same-origin",
        "same-origin-case",
        "foreign",
        "other-port",
        "other-scheme",
        "opaque",
        "origin-without-host",
        "rebound-name-no-token",
        "rebound-same-origin-no-token",
        "any-name-with-token",
        "insecure-on-all-interfaces",
        "no-host-no-token",
    ],
)
def test_check_origin(headers: dict[str, str], token_set: bool, bound: str, refused: bool) -> None:
    """A foreign Origin is always refused; without a token a loopback dashboard also wants
    a loopback Host (DNS rebinding)."""
    if refused:
        with pytest.raises(ApiError) as caught:
            check_origin(headers, token_set=token_set, bound_host=bound)
        assert caught.value.code == 403
    else:
        check_origin(headers, token_set=token_set, bound_host=bound)


def test_reply_body_keeps_the_apps_rows_and_maps_refusals_to_409() -> None:
    """A success carries the app's own process rows; a control refusal is 409 with its line."""
    rows: list[dict[str, Any]] = [{"name": "web", "pid": 1}, {"name": "db", "pid": 2}]
    call = Call("web", "restart", {})
    assert reply_body(call, {"ok": True, "result": rows}) == (
        200,
        {"ok": True, "app": "web", "verb": "restart", "processes": [{"name": "web", "pid": 1}]},
    )
    assert reply_body(call, {"ok": False, "error": "the runtime is stopping"}) == (
        409,
        {"ok": False, "app": "web", "verb": "restart", "error": "the runtime is stopping"},
    )
