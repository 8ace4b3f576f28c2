"""Loading real ecosystem files of every format, argv inference, env expansion and `check`."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.cli.check import format_check
from runtime.config import load as config
from runtime.config.expand import expand_vars
from runtime.config.load import Ecosystem, direct_app, load_ecosystem
from runtime.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ecosystems"
PATH = os.defpath + ":/usr/local/bin"
ENV = {"PATH": PATH}
NODE = shutil.which("node")


@pytest.fixture(autouse=True)
def _four_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pin the cpu count so `max` is the same on every machine."""
    monkeypatch.setattr(config, "cpu_count", lambda: 4)


@pytest.fixture
def in_fixtures(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the fixtures directory so errors name the file as a user would type it."""
    monkeypatch.chdir(FIXTURES)
    return FIXTURES


def write(tmp_path: Path, name: str, text: str) -> str:
    """Write one ecosystem file and return its path."""
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


ERROR_CASES = {
    "instances_lots.yml": ("apps[0] (web).instances: expected an integer, 'max' or -1, got 'lots'"),
    "yaml_syntax.yml": "line 4: invalid YAML: did not find expected '-' indicator",
    "yaml_unsafe_tag.yml": (
        "line 3: invalid YAML: could not determine a constructor for the tag"
        " 'tag:yaml.org,2002:python/object/apply:os.system'"
    ),
    "not_mapping.yml": "apps[0]: expected a mapping of app settings, got 'web'",
    "missing_script.yml": "apps[0] (web).script: expected the file or command to run, got nothing",
    "duplicate_name.yml": "apps[1] (web).name: duplicate app name 'web' (also apps[0])",
    "alias_twice.yml": "apps[0] (web).script: given twice, as 'script' and 'cmd'",
    "memory_bad.yml": (
        "apps[0] (web).max_memory_restart: expected a size such as 512M, 1G or a number of bytes,"
        " got '12X'"
    ),
    "duration_bad.yml": (
        "apps[0] (web).kill_timeout: expected a duration such as 500ms, 5s, 2m or milliseconds,"
        " got 'soon'"
    ),
    "exec_mode_bad.yml": "apps[0] (web).exec_mode: expected 'fork' or 'cluster', got 'threads'",
    "bool_bad.yml": "apps[0] (web).autorestart: expected true or false, got 'maybe'",
    "env_not_mapping.yml": "apps[0] (web).env: expected a mapping of variables, got ['A=1']",
    "env_production_bad.yml": (
        "apps[0] (web).env_production: expected a mapping of variables, got 3"
    ),
    "script_not_found.yml": (
        f"apps[0] (web).script: expected a file under {FIXTURES} or a command on PATH,"
        " got 'no_such_script.py'"
    ),
    "interpreter_not_on_path.yml": (
        "apps[0] (web).interpreter: no-such-interpreter is not on PATH (needed to run 'app.py')"
    ),
    "cwd_missing.yml": "apps[0] (web).cwd: expected an existing directory, got 'no/such/dir'",
    "env_file_missing.yml": (
        "apps[0] (web).env_file: cannot read 'no-such.env': No such file or directory"
    ),
    "env_file_bad.yml": (
        "apps[0] (web).env_file: 'bad.env': line 2: expected KEY=value,"
        " got 'this is not an assignment'"
    ),
    "empty_apps.yml": "apps: expected at least one app, got an empty list",
    "empty_file.yml": "expected 'apps:' with a list of apps, got an empty file",
    "apps_not_list.yml": "apps: expected a list of apps, got 3",
    "top_scalar.yml": "expected 'apps:' with a list of apps, got 'just a string'",
    "stop_exit_codes_bad.yml": (
        "apps[0] (web).stop_exit_codes: expected an exit code 0..255 or a list of them,"
        " got [0, 300]"
    ),
    "health_bad.yml": (
        "apps[0] (web).health: expected an HTTP path starting with '/', got 'healthz'"
    ),
    "socket_sharing_without_listen.yml": (
        "apps[0] (web).socket_sharing: has no effect without listen (set listen or drop it)"
    ),
    "listen_bad.yml": (
        "apps[0] (web).listen: expected a string or a list of strings, got {'port': 8000}"
    ),
    "name_comma.yml": (
        "apps[0] (web,api).name: expected a name without commas or control characters,"
        " got 'web,api'"
    ),
    "non_string_key.yml": "apps[0] (web): expected string keys, got 1",
    "args_unterminated.yml": (
        'apps[0] (web).args: expected shell words, got "\'100" (No closing quotation)'
    ),
    "increment_var_conflict.yml": "apps[0] (web).increment_var: conflicts with instance_var 'PORT'",
    "port_conflict.yml": "apps[0] (web).port: conflicts with PORT in env (set one of them)",
    "cron_bad.yml": (
        "apps[0] (web).cron_restart: expected a cron expression such as '0 3 * * *', got 5"
    ),
    "instances_float.yml": "apps[0] (web).instances: expected an integer, 'max' or -1, got 1.5",
    "max_restarts_negative.yml": (
        "apps[0] (web).max_restarts: expected an integer of at least 0, got -1"
    ),
    "json_syntax.json": "line 1: invalid JSON: Expecting ',' delimiter",
    "toml_syntax.toml": "invalid TOML: Illegal character '\\n' (at line 3, column 20)",
    "bad.procfile": "line 2: expected 'type: command', got 'this line has no colon'",
}


@pytest.mark.usefixtures("in_fixtures")
@pytest.mark.parametrize(("case", "message"), sorted(ERROR_CASES.items()), ids=sorted(ERROR_CASES))
def test_error_fixture_gives_exact_line(case: str, message: str) -> None:
    """Each broken fixture fails with exactly one line naming file, app and key."""
    with pytest.raises(ConfigError) as info:
        load_ecosystem(case, env_name="production", environ=ENV)
    assert str(info.value) == f"{case}: {message}"


def test_every_error_fixture_has_a_case() -> None:
    """No fixture of a broken file goes untested."""
    broken = {p.name for p in FIXTURES.iterdir() if p.suffix in (".yml", ".json", ".toml")}
    broken |= {p.name for p in FIXTURES.glob("*.procfile")}
    assert broken - {"full.yml", "full.json", "full.toml"} == set(ERROR_CASES)


def _summary(eco: Ecosystem) -> list[tuple[object, ...]]:
    return [
        (
            s.name,
            s.argv[1:],
            s.instances,
            s.exec_mode,
            s.max_memory_restart_bytes,
            s.kill_timeout_ms,
            s.autorestart,
            dict(s.env),
        )
        for s in eco.apps
    ]


EXPECTED_FULL = [
    (
        "web",
        (str(FIXTURES / "app.py"), "--port", "8000", "--reload"),
        2,
        "cluster",
        200 * 1024**2,
        3000,
        True,
        {"GREETING": "bonjour", "DEBUG": "false", "PYTHONUNBUFFERED": "1"},
    ),
    ("worker", ("-c", "exec sleep 100"), 1, "fork", None, 5000, False, {}),
]


@pytest.mark.parametrize("name", ["full.yml", "full.json", "full.toml", "ecosystem.config.js"])
def test_every_format_loads_the_same_apps(name: str) -> None:
    """YAML, JSON, TOML and JS (through the real node) describe the same two apps."""
    if name.endswith(".js") and NODE is None:
        pytest.skip("node is not installed")
    environ = {"PATH": f"{os.path.dirname(NODE or '/')}:{PATH}"}
    eco = load_ecosystem(str(FIXTURES / name), env_name="production", environ=environ)
    assert _summary(eco) == EXPECTED_FULL
    assert eco.apps[0].argv[0] == sys.executable
    assert eco.apps[0].listen == (":3000",)
    assert eco.warnings == ()


def test_js_without_node_is_a_clear_error() -> None:
    """Without node on PATH a JS ecosystem says node is needed, not a traceback."""
    with pytest.raises(ConfigError) as info:
        load_ecosystem(str(FIXTURES / "ecosystem.config.js"), environ={"PATH": "/nonexistent"})
    assert str(info.value) == (
        f"{FIXTURES}/ecosystem.config.js: node is not installed;"
        " it is needed to read ecosystem.config.js"
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_syntax_error_is_one_line(in_fixtures: Path) -> None:
    """A JS file node cannot load gives node's error line."""
    with pytest.raises(ConfigError) as info:
        load_ecosystem("bad.config.js", environ={"PATH": os.path.dirname(NODE or "/")})
    assert (
        str(info.value)
        == "bad.config.js: node could not load it: SyntaxError: Unexpected end of input"
    )


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_js_sees_the_environment(tmp_path: Path) -> None:
    """An ecosystem.config.js may read process.env, as pm2 users do."""
    path = write(
        tmp_path,
        "ecosystem.config.js",
        "module.exports = {apps: [{name: process.env.APP_NAME, script: 'sleep 1'}]};",
    )
    eco = load_ecosystem(path, environ={"PATH": os.path.dirname(NODE or "/"), "APP_NAME": "job"})
    assert eco.apps[0].name == "job"


@pytest.mark.parametrize(
    ("environ", "web_port"), [({"PATH": PATH}, "5000"), ({"PATH": PATH, "PORT": "8080"}, "8080")]
)
def test_procfile_lines_become_shell_apps(environ: dict[str, str], web_port: str) -> None:
    """Each `type: command` line is an app run through /bin/sh -c; web gets $PORT or 5000."""
    eco = load_ecosystem(str(FIXTURES / "Procfile"), environ=environ)
    assert [(s.name, s.argv, dict(s.env)) for s in eco.apps] == [
        ("web", ("/bin/sh", "-c", "exec python -m http.server $PORT"), {"PORT": web_port}),
        ("worker", ("/bin/sh", "-c", "exec sleep 100"), {}),
    ]
    assert all(s.cwd == str(FIXTURES) for s in eco.apps)


def test_procfile_by_suffix_and_empty(tmp_path: Path) -> None:
    """`*.procfile` is a Procfile too; one with no process line is an error."""
    path = write(tmp_path, "dev.procfile", "# nothing\n\n")
    with pytest.raises(ConfigError, match="expected at least one 'type: command' line"):
        load_ecosystem(path, environ=ENV)


@pytest.mark.parametrize(
    ("value", "environ", "expected", "missing"),
    [
        ("${A}", {"A": "1"}, "1", set()),
        ("x${A}y", {}, "xy", {"A"}),
        ("${A:-max}", {}, "max", set()),
        ("${A:-max}", {"A": ""}, "max", set()),
        ("${A-max}", {"A": ""}, "", set()),
        ("${A-max}", {}, "max", set()),
        ("$${A}", {"A": "1"}, "${A}", set()),
        ("$A and $PORT", {"A": "1"}, "$A and $PORT", set()),
        (["${A}", {"k": "${B:-b}"}], {"A": "a"}, ["a", {"k": "b"}], set()),
        (3, {}, 3, set()),
    ],
)
def test_expand_vars(
    value: object, environ: dict[str, str], expected: object, missing: set[str]
) -> None:
    """${VAR}, ${VAR:-default}, ${VAR-default} and $${ expand in every string, nothing else."""
    seen: set[str] = set()
    assert expand_vars(value, environ, seen) == expected
    assert seen == missing


def test_expansion_happens_before_validation(tmp_path: Path) -> None:
    """`instances: ${WEB_CONCURRENCY:-max}` works, and unset variables are warned about."""
    path = write(
        tmp_path,
        "eco.yml",
        "apps:\n  - script: sleep 1\n    name: web\n    instances: ${WEB_CONCURRENCY:-max}\n"
        "    env: {DB: '${DATABASE_URL}'}\n",
    )
    assert load_ecosystem(path, environ=ENV).apps[0].instances == 4
    eco = load_ecosystem(path, environ={**ENV, "WEB_CONCURRENCY": "3"})
    assert (eco.apps[0].instances, eco.apps[0].env["DB"]) == (3, "")
    assert eco.warnings == (f"{path}: ${{DATABASE_URL}} is not set; using ''",)


def test_env_selection_warns_when_missing(tmp_path: Path) -> None:
    """--env naming a section no app has (a likely typo) warns and uses env alone."""
    path = write(tmp_path, "eco.yml", "apps:\n  - {name: a, script: sleep 1, env: {X: 1}}\n")
    eco = load_ecosystem(path, env_name="staging", environ=ENV)
    assert dict(eco.apps[0].env) == {"X": "1"}
    assert eco.warnings == (f"{path}: --env staging: no app has env_staging; using env alone",)


def test_env_file_is_read_relative_to_the_ecosystem(tmp_path: Path) -> None:
    """env_file sits under env, relative to the ecosystem file's directory."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "app.env").write_text("A=file\nexport B='file b'\n", encoding="utf-8")
    path = write(
        tmp_path,
        "eco.yml",
        "apps:\n  - {name: a, script: sleep 1, cwd: /, env_file: conf/app.env, env: {A: env}}\n",
    )
    spec = load_ecosystem(path, environ=ENV).apps[0]
    assert dict(spec.env) == {"A": "env", "B": "file b"}
    assert spec.env_file == str(tmp_path / "conf" / "app.env")


def test_dotenv_next_to_the_ecosystem_is_read_by_default(tmp_path: Path) -> None:
    """A .env beside the ecosystem is loaded: master env < .env < env < env_<name>."""
    (tmp_path / ".env").write_text("A=dotenv\nB=dotenv\nC=dotenv\n", encoding="utf-8")
    path = write(
        tmp_path,
        "eco.yml",
        "apps:\n  - {name: a, script: sleep 1, cwd: /, env: {B: env, C: env}, env_prod: {C: prod}}\n",
    )
    spec = load_ecosystem(path, env_name="prod", environ=ENV).apps[0]
    assert dict(spec.env) == {"A": "dotenv", "B": "env", "C": "prod"}
    assert spec.env_file == str(tmp_path / ".env")


@pytest.mark.parametrize(
    ("only", "expected"), [(None, ["a", "b", "c"]), (["a,c"], ["a", "c"]), (["b"], ["b"])]
)
def test_only_selects_apps(tmp_path: Path, only: list[str] | None, expected: list[str]) -> None:
    """--only keeps the named apps, in file order."""
    apps = "".join(f"  - {{name: {n}, script: sleep 1}}\n" for n in "abc")
    eco = load_ecosystem(write(tmp_path, "e.yml", "apps:\n" + apps), only=only, environ=ENV)
    assert [s.name for s in eco.apps] == expected


def test_only_unknown_name_is_an_error(tmp_path: Path) -> None:
    """--only with a name not in the file names it and lists the apps."""
    path = write(tmp_path, "e.yml", "apps:\n  - {name: a, script: sleep 1}\n")
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, only=["a", "zz"], environ=ENV)
    assert str(info.value) == f"{path}: --only: no app named 'zz' (apps: a)"


@pytest.mark.parametrize(
    ("doc", "names"),
    [
        ("- {name: a, script: sleep 1}\n- {name: b, script: sleep 1}\n", ["a", "b"]),
        ("name: solo\nscript: sleep 1\n", ["solo"]),
        ("pm2:\n  - {name: p, script: sleep 1}\n", ["p"]),
        ("apps: {name: one, script: sleep 1}\n", ["one"]),
    ],
)
def test_file_shapes(tmp_path: Path, doc: str, names: list[str]) -> None:
    """A bare list, a single app object, pm2: and apps: with one object all load."""
    eco = load_ecosystem(write(tmp_path, "e.yaml", doc), environ=ENV)
    assert [s.name for s in eco.apps] == names


def test_unknown_top_level_key_warns(tmp_path: Path) -> None:
    """Top-level keys other than apps are warned about, not dropped silently."""
    path = write(tmp_path, "e.yml", "apps: [{name: a, script: sleep 1}]\ndeploy: {}\n")
    assert load_ecosystem(path, environ=ENV).warnings == (
        f"{path}: unknown top-level key 'deploy' (ignored)",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "ecosystem.ini",
            "expected a .yml, .yaml, .json, .toml, .js, .cjs, .mjs file or a Procfile",
        ),
        ("missing.yml", "no such file"),
    ],
)
def test_unreadable_files(tmp_path: Path, name: str, message: str) -> None:
    """An unknown file type or a missing file is a one-line ConfigError."""
    path = str(tmp_path / name)
    if name.endswith(".ini"):
        write(tmp_path, name, "")
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert str(info.value) == f"{path}: {message}"


def test_non_utf8_file(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError, not a UnicodeDecodeError."""
    path = tmp_path / "e.yml"
    path.write_bytes(b"apps: [\xff]\n")
    with pytest.raises(ConfigError, match="expected UTF-8 text"):
        load_ecosystem(str(path), environ=ENV)


def _executable(path: Path, text: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH directory with fake interpreters and a fake command."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("node", "bash", "ruby", "php", "perl", "coffee", "gunicorn", "python3", "deno"):
        _executable(bin_dir / name)
    return bin_dir


@pytest.mark.parametrize(
    ("app", "argv"),
    [
        ({"script": "a.py"}, [sys.executable, "{d}/a.py"]),
        ({"script": "a.js"}, ["{bin}/node", "{d}/a.js"]),
        (
            {"script": "a.mjs", "node_args": "--max-old-space-size=64"},
            ["{bin}/node", "--max-old-space-size=64", "{d}/a.mjs"],
        ),
        ({"script": "a.cjs"}, ["{bin}/node", "{d}/a.cjs"]),
        ({"script": "a.sh", "args": "x y"}, ["{bin}/bash", "{d}/a.sh", "x", "y"]),
        ({"script": "a.rb"}, ["{bin}/ruby", "{d}/a.rb"]),
        ({"script": "a.php"}, ["{bin}/php", "{d}/a.php"]),
        ({"script": "a.pl"}, ["{bin}/perl", "{d}/a.pl"]),
        ({"script": "a.coffee"}, ["{bin}/coffee", "{d}/a.coffee"]),
        ({"script": "run"}, ["{d}/run"]),
        (
            {"script": "a.py", "interpreter": "python3", "interpreter_args": ["-X", "dev"]},
            ["{bin}/python3", "-X", "dev", "{d}/a.py"],
        ),
        ({"script": "a.js", "exec_interpreter": "deno"}, ["{bin}/deno", "{d}/a.js"]),
        ({"script": "run", "interpreter": "none", "args": ["--x"]}, ["{d}/run", "--x"]),
        ({"script": "gunicorn", "args": "app:app"}, ["{bin}/gunicorn", "app:app"]),
        ({"script": "gunicorn app:app -w 2"}, ["/bin/sh", "-c", "exec gunicorn app:app -w 2"]),
        ({"script": "echo hi", "args": ["a b"]}, ["/bin/sh", "-c", "exec echo hi 'a b'"]),
        ({"script": "a.py", "cwd": "sub"}, [sys.executable, "{d}/sub/a.py"]),
        ({"script": "a.py", "interpreter": "./venv/python"}, ["{d}/venv/python", "{d}/a.py"]),
    ],
)
def test_interpreter_inference(
    tmp_path: Path, bin_dir: Path, app: dict[str, object], argv: list[str]
) -> None:
    """The interpreter follows the extension, an explicit interpreter, PATH or /bin/sh -c."""
    d = tmp_path / "app"
    (d / "sub").mkdir(parents=True)
    (d / "venv").mkdir()
    for name in ("a.py", "a.js", "a.mjs", "a.cjs", "a.sh", "a.rb", "a.php", "a.pl", "a.coffee"):
        (d / name).write_text("", encoding="utf-8")
    (d / "sub" / "a.py").write_text("", encoding="utf-8")
    _executable(d / "run")
    _executable(d / "venv" / "python")
    path = write(d, "eco.json", json.dumps({"apps": [{"name": "x", **app}]}))
    spec = load_ecosystem(path, environ={"PATH": str(bin_dir)}).apps[0]
    assert list(spec.argv) == [a.format(d=d, bin=bin_dir) for a in argv]


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ({"script": "a.js"}, "apps[0] (x).interpreter: node is not on PATH (needed to run 'a.js')"),
        (
            {"script": "gunicorn"},
            "apps[0] (x).script: expected a file under {d} or a command on PATH, got 'gunicorn'",
        ),
    ],
)
def test_resolution_errors(tmp_path: Path, app: dict[str, object], message: str) -> None:
    """Missing interpreters and commands, and args with nothing to take them, are errors."""
    (tmp_path / "a.js").write_text("", encoding="utf-8")
    _executable(tmp_path / "run")
    path = write(tmp_path, "eco.json", json.dumps({"apps": [{"name": "x", **app}]}))
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ={"PATH": str(tmp_path / "empty")})
    assert str(info.value) == f"{path}: " + message.format(d=tmp_path)


def test_direct_app_builds_one_app(tmp_path: Path) -> None:
    """The command-line form gives one app with its options, cwd as the base directory."""
    (tmp_path / "app.py").write_text("", encoding="utf-8")
    eco = direct_app(
        "app.py",
        {"name": "web", "instances": "max", "exec_mode": "cluster", "watch": True},
        env_vars={"KEY": "VALUE"},
        args=["--port", "1"],
        environ={"PATH": PATH, "PORT": "8000"},
        cwd=str(tmp_path),
    )
    spec = eco.apps[0]
    assert eco.file == "<command line>"
    assert (spec.name, spec.instances, spec.exec_mode) == ("web", 4, "cluster")
    assert spec.argv == (sys.executable, str(tmp_path / "app.py"), "--port", "1")
    assert dict(spec.env) == {"KEY": "VALUE", "PYTHONUNBUFFERED": "1"}
    assert (spec.watch, spec.listen) == ((str(tmp_path),), (":8000",))


def test_direct_app_errors_name_the_option(tmp_path: Path) -> None:
    """A bad command-line value names the option, with no apps[i] to confuse."""
    with pytest.raises(ConfigError) as info:
        direct_app("sleep 1", {"instances": "lots"}, environ=ENV, cwd=str(tmp_path))
    assert (
        str(info.value) == "<command line>: instances: expected an integer, 'max' or -1, got 'lots'"
    )


def test_format_check_lists_every_setting_and_masks_secrets(tmp_path: Path) -> None:
    """`check` prints every field of every app, secrets masked."""
    path = write(
        tmp_path,
        "e.yml",
        "apps:\n  - name: web\n    script: sleep 1\n    env: {API_TOKEN: hunter2, MODE: prod}\n",
    )
    text = format_check(load_ecosystem(path, environ=ENV))
    assert text.startswith(f"{path}: 1 app\n\nweb\n  script: sleep 1\n")
    assert "  argv: /bin/sh -c 'exec sleep 1'\n" in text
    assert "  kill_timeout: 5000 ms\n" in text
    assert "  autorestart: true\n" in text
    assert text.endswith("  env:\n    API_TOKEN=****\n    MODE=prod")
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("command", "argv"),
    [
        ("gunicorn -b :$PORT app:app", ("/bin/sh", "-c", "exec gunicorn -b :$PORT app:app")),
        ("cd web && npm start", ("/bin/sh", "-c", "cd web && npm start")),
        ("a | b", ("/bin/sh", "-c", "a | b")),
        ("exec node server.js", ("/bin/sh", "-c", "exec node server.js")),
        ("sleep 1; echo x", ("/bin/sh", "-c", "sleep 1; echo x")),
        ("python -c 'print(1); x()'", ("/bin/sh", "-c", "exec python -c 'print(1); x()'")),
        ("a\nb", ("/bin/sh", "-c", "a\nb")),
        ("run > log 2>&1", ("/bin/sh", "-c", "run > log 2>&1")),
        ('py -c "print(\\"a;b\\")"', ("/bin/sh", "-c", 'exec py -c "print(\\"a;b\\")"')),
        ("echo a\\; b", ("/bin/sh", "-c", "exec echo a\\; b")),
        ("echo 'it''s (x)'", ("/bin/sh", "-c", "exec echo 'it''s (x)'")),
        ("serve # comment", ("/bin/sh", "-c", "serve # comment")),
        ("echo 'unbalanced", ("/bin/sh", "-c", "echo 'unbalanced")),
        ("  cd /app", ("/bin/sh", "-c", "  cd /app")),
    ],
    ids=[
        "simple",
        "and-list",
        "pipe",
        "already-exec",
        "sequence",
        "quoted",
        "newline",
        "redirect",
        "escaped-quote",
        "escaped-semicolon",
        "adjacent-quotes",
        "comment",
        "unbalanced",
        "keyword",
    ],
)
def test_shell_lines_exec_their_program(command: str, argv: tuple[str, ...]) -> None:
    """A simple command line gets `exec` so the program is the worker (and LISTEN_PID's pid)."""
    assert config.shell_argv(command) == argv


def _expand_with_re(text: str, environ: dict[str, str], missing: set[str]) -> str:
    """The reference: `${...}` expansion as one regular expression (what the scan replaced)."""
    import re

    pattern = r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}"

    def one(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2), match.group(3)
        if name is None:
            return "${"
        current = environ.get(name)
        if (op == ":-" and not current) or (op == "-" and current is None):
            return default or ""
        if current is None:
            missing.add(name)
        return current or ""

    return re.sub(pattern, one, text)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["$", "$$", "{", "}", "${", "$${", "A", "B_1", "1", ":-", "-", ":", "x y", "é"]
        ),
        max_size=12,
    ).map("".join)
)
def test_expansion_scan_matches_the_regular_expression(text: str) -> None:
    """The hand scan expands exactly what the documented pattern does, and warns alike."""
    environ = {"A": "a", "B_1": ""}
    seen_scan: set[str] = set()
    seen_re: set[str] = set()
    assert expand_vars(text, environ, seen_scan) == _expand_with_re(text, environ, seen_re)
    assert seen_scan == seen_re


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    """A key given twice in one YAML mapping is refused with its line (PyYAML keeps the last)."""
    path = write(tmp_path, "e.yml", "apps:\n  - name: web\n    script: a.py\n    name: api\n")
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert str(info.value) == f"{path}: line 4: invalid YAML: duplicate key 'name'"


def test_yaml_merge_keys_may_repeat_a_key(tmp_path: Path) -> None:
    """`<<: *base` followed by an override is YAML's merge, not a duplicate."""
    (tmp_path / "a.py").write_text("print(1)\n")
    text = (
        "base: &base {script: a.py, max_restarts: 3}\napps:\n  - <<: *base\n    max_restarts: 5\n"
    )
    eco = load_ecosystem(write(tmp_path, "e.yml", text), environ=ENV)
    assert eco.apps[0].max_restarts == 5


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """Nine nested aliases of seven (40 million values) are refused before anything is built."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 7)}]" for i in range(1, 10)]
    path = write(tmp_path, "e.yml", "\n".join([*lines, "apps: *a9", ""]))
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert str(info.value) == f"{path}: expected at most 100000 values, got more"


def test_yaml_recursive_alias_is_refused(tmp_path: Path) -> None:
    """A mapping that contains itself is refused with one line, not a RecursionError."""
    path = write(tmp_path, "e.yml", "apps: &a [*a]\n")
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert "invalid YAML" in str(info.value)


def test_an_oversized_ecosystem_file_is_refused(tmp_path: Path) -> None:
    """Files over 4 MiB are refused with one line instead of being read whole."""
    path = write(tmp_path, "e.json", '{"apps": []}' + " " * (4 << 20))
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert str(info.value) == f"{path}: expected a file of at most 4194304 bytes, got more"


def test_env_file_from_dev_zero_is_bounded(tmp_path: Path) -> None:
    """`env_file: /dev/zero` stops at 1 MiB with one line, never reads until MemoryError."""
    (tmp_path / "a.py").write_text("print(1)\n")
    path = write(tmp_path, "e.yml", "apps:\n  - script: a.py\n    env_file: /dev/zero\n")
    with pytest.raises(ConfigError) as info:
        load_ecosystem(path, environ=ENV)
    assert str(info.value) == (
        f"{path}: apps[0] (a).env_file: cannot read '/dev/zero': "
        "expected a file of at most 1048576 bytes, got more"
    )


@pytest.mark.parametrize("instances", ["{min: 1, max: max}", "'2-max'", "{min: 0, max: 8}"])
def test_an_autoscale_range_counts_cpus_when_an_end_does(tmp_path: Path, instances: str) -> None:
    """`max` (or 0) at either end of a range is the CPU count, as in `instances: max`."""
    path = write(
        tmp_path, "eco.yml", f"apps:\n  - {{name: web, script: sleep 1, instances: {instances}}}\n"
    )
    scale = load_ecosystem(path, environ=ENV).apps[0].autoscale
    assert scale is not None
    assert (scale.min, scale.max) == {"{min: 1, max: max}": (1, 4), "'2-max'": (2, 4)}.get(
        instances, (4, 8)
    )
