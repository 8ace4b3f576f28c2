"""Pure validation of one app: unit parsers, key aliases, env precedence and conflicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from runtime.config.dotenv import parse_dotenv
from runtime.config.keys import CANONICAL
from runtime.config.secrets import mask_env
from runtime.config.spec import (
    AppSpec,
    RawApp,
    Resolved,
    build_app_spec,
    default_name,
    normalize_app,
)
from runtime.config.values import (
    BadValue,
    parse_bool,
    parse_bytes,
    parse_duration_ms,
    parse_env,
    parse_exec_mode,
    parse_exit_codes,
    parse_instances,
    parse_words,
)
from runtime.errors import ConfigError

FACTS = Resolved(script="/srv/app.py", argv=("/usr/bin/python3", "/srv/app.py"), cwd="/srv", cpus=4)


def build(raw: Mapping[str, object], *, env_name: str | None = None, **facts: object) -> AppSpec:
    """Normalize and build one app the way config does, with fixed facts."""
    base = {"script": FACTS.script, "argv": FACTS.argv, "cwd": FACTS.cwd, "cpus": FACTS.cpus}
    app = normalize_app({"script": "app.py", **raw}, file="eco.yml", index=0)
    return build_app_spec(app, Resolved(**{**base, **facts}), env_name=env_name)  # type: ignore[arg-type]


def error_of(raw: Mapping[str, object], **kwargs: object) -> str:
    """The one-line ConfigError that building `raw` raises."""
    with pytest.raises(ConfigError) as info:
        build(raw, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("1K", 1024),
        ("1k", 1024),
        ("200M", 200 * 1024**2),
        ("200MB", 200 * 1024**2),
        ("1G", 1024**3),
        ("1gb", 1024**3),
        ("1.5G", int(1.5 * 1024**3)),
        (" 64 M ", 64 * 1024**2),
    ],
)
def test_parse_bytes_accepts_pm2_and_friendlier_forms(value: object, expected: int) -> None:
    """Memory sizes take K/M/G (x1024), KB/MB/GB, lower case, or bare bytes."""
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["12X", "", "M", "-1M", 0, True, None, float("inf"), [1]])
def test_parse_bytes_rejects_nonsense(value: object) -> None:
    """Anything that is not a positive size is a BadValue naming the forms."""
    with pytest.raises(BadValue, match="expected a size"):
        parse_bytes(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (250, 250),
        (1.4, 1),
        ("250", 250),
        ("500ms", 500),
        ("5s", 5000),
        ("1.5s", 1500),
        ("2m", 120_000),
        ("1h", 3_600_000),
        ("5S", 5000),
    ],
)
def test_parse_duration_ms(value: object, expected: int) -> None:
    """Durations are ms when bare, else ms/s/m/h suffixed."""
    assert parse_duration_ms(value) == expected


@pytest.mark.parametrize("value", ["soon", "5d", "-5s", -1, True, float("nan"), "1e3", {}])
def test_parse_duration_rejects_nonsense(value: object) -> None:
    """A duration that is negative, unit-less text or another type is refused."""
    with pytest.raises(BadValue, match="expected a duration"):
        parse_duration_ms(value)


def test_parse_duration_has_a_ceiling() -> None:
    """Durations longer than a timer can hold are refused rather than overflowing later."""
    with pytest.raises(BadValue, match="at most"):
        parse_duration_ms("1000h")


@pytest.mark.parametrize(
    ("value", "cpus", "expected"),
    [
        (3, 8, 3),
        ("3", 8, 3),
        ("max", 8, 8),
        ("MAX", 8, 8),
        (0, 8, 8),
        ("0", 8, 8),
        (-1, 8, 7),
        ("-1", 8, 7),
        (-1, 1, 1),
        (-4, 2, 1),
    ],
)
def test_parse_instances_counts_like_pm2(value: object, cpus: int, expected: int) -> None:
    """N, max/0 (one per cpu) and -1 (cpus-1, at least 1) resolve against the cpu count."""
    assert parse_instances(value, cpus) == expected


@pytest.mark.parametrize("value", ["lots", 1.5, True, None, [], "", "5000"])
def test_parse_instances_rejects_nonsense(value: object) -> None:
    """Non-integers (and absurd counts) are refused with the documented one-line message."""
    with pytest.raises(BadValue, match=r"expected (an integer, 'max' or -1|at most)"):
        parse_instances(value, 4)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("No", False), ("1", True), ("off", False)],
)
def test_parse_bool_accepts_text_from_expansion(value: object, expected: bool) -> None:
    """Booleans may arrive as text after ${VAR} expansion."""
    assert parse_bool(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("--port 8000", ("--port", "8000")),
        ("-c 'print(1)'", ("-c", "print(1)")),
        (["--port", 8000], ("--port", "8000")),
        ("", ()),
    ],
)
def test_parse_words_splits_like_a_shell(value: object, expected: tuple[str, ...]) -> None:
    """args / interpreter_args are a list, or a string split shell-style."""
    assert parse_words(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("fork", "fork"), ("cluster_mode", "cluster"), ("Fork_Mode", "fork"), ("cluster", "cluster")],
)
def test_parse_exec_mode_takes_pm2_spellings(value: str, expected: str) -> None:
    """exec_mode accepts fork/cluster and pm2's *_mode forms."""
    assert parse_exec_mode(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(0, {0}), ([0, 2], {0, 2}), ("3", {3}), ([], set())]
)
def test_parse_exit_codes(value: object, expected: set[int]) -> None:
    """stop_exit_codes is one code or a list of them."""
    assert parse_exit_codes(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"A": "x"}, {"A": "x"}),
        ({"N": 3, "F": 1.5}, {"N": "3", "F": "1.5"}),
        ({"T": True, "U": False}, {"T": "true", "U": "false"}),
        ({"E": None}, {"E": ""}),
        ({"J": {"a": [1, 2]}}, {"J": '{"a": [1, 2]}'}),
    ],
)
def test_parse_env_stringifies_values(value: object, expected: dict[str, str]) -> None:
    """Env values all become strings, objects as JSON (pm2 does the same)."""
    assert parse_env(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB=two\n", {"A": "1", "B": "two"}),
        ("# comment\n\nexport A=1\n", {"A": "1"}),
        ("A='single # not a comment'\n", {"A": "single # not a comment"}),
        ('A="line\\nbreak"\n', {"A": "line\nbreak"}),
        ("A=value # trailing comment\n", {"A": "value"}),
        ("A=\n", {"A": ""}),
        ("A = spaced\n", {"A": "spaced"}),
        ("URL=postgres://u:p@h/db?x=1\n", {"URL": "postgres://u:p@h/db?x=1"}),
    ],
)
def test_parse_dotenv(text: str, expected: dict[str, str]) -> None:
    """The env file reads like docker's and python-dotenv's KEY=value files."""
    assert parse_dotenv(text) == expected


@pytest.mark.parametrize("text", ["just words\n", "A='unterminated\n", "=1\n"])
def test_parse_dotenv_names_the_bad_line(text: str) -> None:
    """A line that is not KEY=value is refused with its line number."""
    with pytest.raises(BadValue, match="line 1: expected KEY=value"):
        parse_dotenv(text)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("app.py", "app"),
        ("/srv/bin/server.js", "server"),
        ("gunicorn app:app -b :80", "gunicorn"),
        ("./run", "run"),
    ],
)
def test_default_name_is_the_script_basename(script: str, expected: str) -> None:
    """The name defaults to the script's basename without extension."""
    assert default_name(script) == expected


@pytest.mark.parametrize(
    ("key", "canonical"),
    [
        ("cmd", "script"),
        ("command", "script"),
        ("exec", "script"),
        ("node_args", "interpreter_args"),
        ("nodeArgs", "interpreter_args"),
        ("exec_interpreter", "interpreter"),
        ("execInterpreter", "interpreter"),
        ("cron", "cron_restart"),
        ("maxMemoryRestart", "max_memory_restart"),
        ("expBackoffRestartDelay", "exp_backoff_restart_delay"),
        ("stopExitCodes", "stop_exit_codes"),
    ],
)
def test_aliases_and_camel_case_map_to_canonical_keys(key: str, canonical: str) -> None:
    """pm2's aliases and camelCase forms of every key are understood."""
    assert CANONICAL[key] == canonical


def test_normalize_warns_about_unknown_keys_with_a_suggestion() -> None:
    """A typo is a warning naming the closest key, never an error or silence."""
    app = normalize_app({"script": "a.py", "instnaces": 2, "zzz": 1}, file="e.yml", index=0)
    assert app.warnings == (
        "e.yml: apps[0] (a): unknown key 'instnaces' (did you mean 'instances'?)",
        "e.yml: apps[0] (a): unknown key 'zzz'",
    )


def test_normalize_suggests_canonical_name_for_alias_typo() -> None:
    """A typo of a camelCase form suggests the snake_case key it stands for."""
    app = normalize_app({"script": "a.py", "maxMemoryRestrat": "1G"}, file="e.yml", index=0)
    assert app.warnings == (
        "e.yml: apps[0] (a): unknown key 'maxMemoryRestrat' (did you mean 'max_memory_restart'?)",
    )


def test_normalize_names_ignored_pm2_keys() -> None:
    """pm2 options with no meaning here get their own warning."""
    app = normalize_app({"script": "a.py", "out_file": "/x"}, file="e.yml", index=0)
    assert app.warnings == (
        "e.yml: apps[0] (a): pm2 key 'out_file' has no effect here"
        " (logs go to stdout as one line per record)",
    )


def test_normalize_collects_env_sections() -> None:
    """env_<name> sections are kept aside for --env, env_file is a key of its own."""
    app = normalize_app(
        {"script": "a.py", "env_production": {"A": 1}, "env_file": ".env"}, file="e", index=0
    )
    assert dict(app.envs) == {"production": {"A": 1}}
    assert app.values["env_file"] == ".env"


def test_defaults_match_design() -> None:
    """An app with only a script gets the key table's (pm2's) defaults."""
    spec = build({})
    assert (spec.name, spec.instances, spec.exec_mode) == ("app", 1, "fork")
    assert (spec.kill_timeout_ms, spec.min_uptime_ms, spec.max_restarts) == (5000, 1000, 16)
    assert (spec.autorestart, spec.treekill, spec.wait_ready) == (True, True, False)
    assert (spec.listen, spec.socket_sharing, spec.watch) == ((), "reuseport", ())
    assert spec.env == {"PYTHONUNBUFFERED": "1"}


def test_every_field_is_parsed() -> None:
    """Each known key lands, converted, in its AppSpec field."""
    spec = build(
        {
            "name": "web",
            "instances": "max",
            "execMode": "cluster",
            "restart_delay": "2s",
            "max_restarts": "3",
            "min_uptime": "5s",
            "max_memory_restart": "1G",
            "kill_timeout": 8000,
            "listen_timeout": "10s",
            "wait_ready": "true",
            "stop_exit_codes": [0, 3],
            "treekill": False,
            "increment_var": "PORT",
            "instance_var": "INSTANCE_ID",
            "listen": ["0.0.0.0:8000", "unix:/run/w.sock"],
            "socket_sharing": "reuseport",
            "health": "/healthz",
            "watch": ["src", "/etc/app"],
            "ignore_watch": "node_modules",
            "watch_delay": 250,
            "cron": "0 3 * * *",
            "autorestart": "no",
        }
    )
    assert spec.name == "web"
    assert (spec.instances, spec.exec_mode, spec.restart_delay_ms) == (4, "cluster", 2000)
    assert (spec.max_restarts, spec.min_uptime_ms, spec.kill_timeout_ms) == (3, 5000, 8000)
    assert (spec.max_memory_restart_bytes, spec.listen_timeout_ms) == (1024**3, 10_000)
    assert (spec.wait_ready, spec.treekill, spec.autorestart) == (True, False, False)
    assert spec.stop_exit_codes == {0, 3}
    assert (spec.increment_var, spec.instance_var) == ("PORT", "INSTANCE_ID")
    assert spec.listen == ("0.0.0.0:8000", "unix:/run/w.sock")
    assert (spec.socket_sharing, spec.health) == ("reuseport", "/healthz")
    assert spec.watch == ("/srv/src", "/etc/app")
    assert (spec.ignore_watch, spec.watch_delay_ms) == (("node_modules",), 250)
    assert spec.cron_restart == "0 3 * * *"


@pytest.mark.parametrize(
    ("watch", "expected"),
    [(True, ("/srv",)), (False, ()), ("true", ("/srv",)), ("lib", ("/srv/lib",)), (None, ())],
)
def test_watch_true_means_the_app_cwd(watch: object, expected: tuple[str, ...]) -> None:
    """watch: true watches the cwd; paths are relative to it."""
    assert build({"watch": watch}).watch == expected


@pytest.mark.parametrize(
    ("raw", "facts", "expected"),
    [
        ({"exec_mode": "cluster"}, {}, (":3000",)),
        ({"exec_mode": "cluster"}, {"default_port": "5000"}, (":5000",)),
        ({"exec_mode": "cluster", "env": {"PORT": 8080}}, {}, (":8080",)),
        ({"exec_mode": "cluster", "port": 9000}, {}, (":9000",)),
        ({"listen": "127.0.0.1:$PORT", "env": {"PORT": "81"}}, {}, ("127.0.0.1:81",)),
        ({"exec_mode": "fork"}, {}, ()),
    ],
)
def test_cluster_listens_on_port_by_default(
    raw: dict[str, object], facts: dict[str, object], expected: tuple[str, ...]
) -> None:
    """Cluster apps with no listen pre-bind :$PORT, from the app env, the environ or 3000."""
    assert build(raw, **facts).listen == expected


@pytest.mark.parametrize(
    ("env_name", "expected"),
    [
        (None, {"A": "env", "B": "env", "C": "file"}),
        ("production", {"A": "prod", "B": "env", "C": "file"}),
        ("staging", {"A": "env", "B": "env", "C": "file"}),
    ],
)
def test_env_precedence(env_name: str | None, expected: dict[str, str]) -> None:
    """env_file < env < env_<name>, the selected section merged over env."""
    raw = {"env": {"A": "env", "B": "env"}, "env_production": {"A": "prod"}}
    spec = build(raw, env_name=env_name, env_file_env={"A": "file", "C": "file"}, argv=("/x",))
    assert spec.env == expected


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (("/usr/bin/python3.12", "a.py"), {}, "1"),
        (("/usr/bin/python3", "a.py"), {"PYTHONUNBUFFERED": "0"}, "0"),
        (("/usr/bin/node", "a.js"), {}, None),
    ],
)
def test_python_apps_are_unbuffered(
    argv: tuple[str, ...], env: dict[str, str], expected: str | None
) -> None:
    """A Python interpreter gets PYTHONUNBUFFERED=1 unless the app sets it (as pm2 does)."""
    assert build({"env": env}, argv=argv).env.get("PYTHONUNBUFFERED") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"name": "web", "instances": "lots"},
            "eco.yml: apps[0] (web).instances: expected an integer, 'max' or -1, got 'lots'",
        ),
        (
            {"increment_var": "X", "instance_var": "X"},
            "eco.yml: apps[0] (app).increment_var: conflicts with instance_var 'X'",
        ),
        (
            {"socket_sharing": "shared"},
            "eco.yml: apps[0] (app).socket_sharing: has no effect without listen"
            " (set listen or drop it)",
        ),
        (
            {"port": 80, "env_production": {"PORT": 81}},
            "eco.yml: apps[0] (app).port: conflicts with PORT in env (set one of them)",
        ),
        (
            {"env": {"A=B": 1}},
            "eco.yml: apps[0] (app).env: expected variable names without '=', got 'A=B'",
        ),
        (
            {"health": "/ok path"},
            "eco.yml: apps[0] (app).health: expected an HTTP path starting with '/',"
            " got '/ok path'",
        ),
        (
            {"socket_sharing": "fair"},
            "eco.yml: apps[0] (app).socket_sharing: expected 'shared' or 'reuseport', got 'fair'",
        ),
        (
            {"port": 70000},
            "eco.yml: apps[0] (app).port: expected a port 1..65535, got 70000",
        ),
        (
            {"name": ""},
            "eco.yml: apps[0] (app).name: expected a non-empty string, got ''",
        ),
        (
            {"instance_var": "1X"},
            "eco.yml: apps[0] (app).instance_var: expected an environment variable name, got '1X'",
        ),
    ],
)
def test_bad_values_and_conflicts_are_one_line_errors(
    raw: dict[str, object], expected: str
) -> None:
    """Every bad value or conflicting pair is a ConfigError naming file, app and key."""
    assert error_of(raw, env_name="production") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([1, 2], "e.yml: apps[2]: expected a mapping of app settings, got [1, 2]"),
        (
            {"name": "x"},
            "e.yml: apps[2] (x).script: expected the file or command to run, got nothing",
        ),
        ({"script": 5}, "e.yml: apps[2].script: expected a file or a command line, got 5"),
        (
            {"script": "a", "cmd": "b", "name": "x"},
            "e.yml: apps[2] (x).script: given twice, as 'script' and 'cmd'",
        ),
        (
            {"script": "a", "maxRestarts": 1, "max_restarts": 2},
            "e.yml: apps[2].max_restarts: given twice, as 'maxRestarts' and 'max_restarts'",
        ),
    ],
)
def test_normalize_errors(raw: object, expected: str) -> None:
    """Shape errors found before any value is parsed still name the app and key."""
    with pytest.raises(ConfigError) as info:
        normalize_app(raw, file="e.yml", index=2)
    assert str(info.value) == expected


def test_mask_env_hides_secrets() -> None:
    """Keys naming secrets are masked for printing; others are kept."""
    env = {"API_TOKEN": "t", "DB_PASSWORD": "p", "SECRET": "s", "aws_key": "k", "HOME": "/h"}
    assert mask_env(env) == {
        "API_TOKEN": "****",
        "DB_PASSWORD": "****",
        "SECRET": "****",
        "aws_key": "****",
        "HOME": "/h",
    }


def test_raw_app_get_wraps_bad_values() -> None:
    """RawApp.get turns a parser's BadValue into the file/app/key one-liner."""
    app = RawApp("f.yml", 1, "w", {"k": "v"}, {})
    parse: Callable[[object], int] = parse_duration_ms
    with pytest.raises(ConfigError, match=r"^f\.yml: apps\[1\] \(w\)\.k: expected a duration"):
        app.get("k", parse, 0)
    assert app.get("missing", parse, 7) == 7


@pytest.mark.parametrize(
    ("instances", "expected"),
    [(None, 1), (3, 3), ("max", 4), ({"min": 2, "max": 6}, 6), ("1-max", 4)],
    ids=["default", "fixed", "max", "range", "range-max"],
)
def test_most_instances_counts_the_autoscale_max(instances: object, expected: int) -> None:
    """`most_instances` (what pretty logs pad for) is `instances`, or the autoscale max."""
    raw = {} if instances is None else {"instances": instances}
    assert build(raw).most_instances == expected


def test_version_key_is_text() -> None:
    """`version:` is kept as text (a YAML number too); absent, it is None."""
    assert build({"version": "1.2.3"}).version == "1.2.3"
    assert build({"version": 2}).version == "2"
    assert build({}).version is None
