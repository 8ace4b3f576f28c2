"""pm2-runtime's command line and pm2's ecosystem files against a real master (issue #12).

Each test starts `python -m runtime` as pm2-runtime would be started, drives it with the
control verbs through the CLI (a subprocess, as a user would in `docker exec`), and proves
what ran by what the workers print or serve.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    ROOT,
    Master,
    Record,
    free_port,
    pid_alive,
    py,
    write_ecosystem,
)
from tests.integration.test_control import cli, rows

FIXTURES = ROOT / "tests" / "fixtures" / "pm2"
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")
SYSTEM_PYTHON = "/usr/bin/python3"  # readable by nobody, unlike a venv under /root
NOBODY = 65534

# A node worker that says what it was started with and then that it is ready.
NODE_APP = """\
console.log(JSON.stringify({execArgv: process.execArgv, said: 'hello ' + process.env.MESSAGE}));
if (process.send) process.send('ready');
setInterval(() => {}, 60000);
"""
# An HTTP server that answers `$MESSAGE $EXTRA` on 127.0.0.1:$PORT (adopted in cluster mode).
MESSAGE_SERVER = """\
import http.server, os

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{os.environ.get('MESSAGE')} {os.environ.get('EXTRA', '-')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""
# A worker that prints its uid, gid, HOME and the names of its environment, as JSON.
WHO_AM_I = (
    "import json, os, time\n"
    "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'home': os.environ.get('HOME'),"
    " 'names': sorted(os.environ), 'app': os.environ.get('RUNTIME_APP')}), flush=True)\n"
    "while True: time.sleep(1)"
)
LIST_HEADER = [
    "id",
    "name",
    "version",
    "mode",
    "pid",
    "uptime",
    "↺",
    "status",
    "cpu",
    "mem",
    "user",
    "watching",
]
SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"


def runtime(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`python -m runtime ARGS` that is expected to end by itself (a usage or config error)."""
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
    )


def worker_record(m: Master, app: str, key: str, timeout: float = 20.0) -> Record:
    """The first line app `app` printed that carries `key` (a JSON line merged into the record)."""
    found: list[Record] = m.wait_for(
        lambda: [r for r in m.lines(app) if key in r], timeout, f"a line of {app} with {key!r}"
    )
    return found[0]


def settings(ctl: Path, name: str) -> dict[str, Any]:
    return json.loads(cli(ctl, "show", name, "--json").stdout)["settings"]  # type: ignore[no-any-return]


def get(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def wait_serving(m: Master, port: int, expected: str, timeout: float = 20.0) -> None:
    """Wait until 8 answers in a row are `expected` (every old worker gone)."""

    def settled() -> bool:
        try:
            return all(get(port) == expected for _ in range(8))
        except OSError:
            return False

    deadline = time.monotonic() + timeout
    while not settled():
        if time.monotonic() > deadline:
            last = "no answer"
            try:
                last = get(port)
            except OSError as exc:
                last = repr(exc)
            tail = "\n".join(json.dumps(r) for r in m.records[-20:])
            pytest.fail(f"port {port} never settled on {expected!r} (last: {last!r})\n{tail}")
        time.sleep(0.1)


# --- start FILE | SCRIPT ------------------------------------------------------------------


def test_start_file_runs_the_files_apps(tmp_path: Path, run_master) -> None:
    """`runtime start FILE` (pm2-runtime's spelling) runs every app of the file in the foreground."""
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(
        tmp_path / "ecosystem.json",
        [{"name": "a", **py("print('I am a', flush=True)\nimport time\ntime.sleep(60)")},
         {"name": "b", **py("print('I am b', flush=True)\nimport time\ntime.sleep(60)")}],
    )  # fmt: skip
    m = run_master("start", str(eco), "--control", str(ctl))
    for name in ("a", "b"):
        m.wait_for(lambda n=name: any(r.get("message") == f"I am {n}" for r in m.lines(n)))
    assert [r["name"] for r in rows(ctl)] == ["a", "b"]
    m.signal(signal.SIGTERM)
    assert m.wait_exit() == 0


def test_start_script_with_two_instances_is_cluster(tmp_path: Path, run_master) -> None:
    """`runtime start SCRIPT -i 2` runs two instances, in cluster mode without `-x`, as pm2."""
    script = tmp_path / "server.py"
    script.write_text(MESSAGE_SERVER)
    port = free_port()
    ctl = tmp_path / "ctl.sock"
    m = run_master(
        "start", str(script), "-i", "2", "--listen", f"127.0.0.1:{port}", "--control", str(ctl),
        env={"PORT": str(port), "MESSAGE": "clustered"},
    )  # fmt: skip
    wait_serving(m, port, "clustered -")
    m.wait_event("worker_ready", count=2, app="server")
    data = rows(ctl)
    assert [(r["instance"], r["mode"], r["status"]) for r in data] == [
        (0, "cluster", "online"),
        (1, "cluster", "online"),
    ]
    assert all(pid_alive(r["pid"]) for r in data)
    got = settings(ctl, "server")
    assert (got["instances"], got["exec_mode"]) == (2, "cluster")
    assert got["exec_mode_why"] == "inferred: instances is given, as in pm2"


# --- the lesson's flags in the direct form ----------------------------------------------

LESSON_FLAGS = [
    (["--max-memory-restart", "100M"], {"max_memory_restart_bytes": 100 * 1024 * 1024}),
    (["--restart-delay", "100"], {"restart_delay_ms": 100}),
    (["--exp-backoff-restart-delay", "100"], {"exp_backoff_restart_delay_ms": 100}),
    (["--no-autorestart"], {"autorestart": False}),
    (["--no-autostart"], {"autostart": False}),
    (["--stop-exit-codes", "0", "3"], {"stop_exit_codes": [0, 3]}),
    (["--node-args=--max-old-space-size=64"], {"interpreter_args": ["--max-old-space-size=64"]}),
    (["-c", "0 3 * * *"], {"cron_restart": "0 3 * * *"}),
    (["--cron", "*/5 * * * *"], {"cron_restart": "*/5 * * * *"}),
    (["-n", "lesson"], {"name": "lesson"}),
    (["--kill-timeout", "2s"], {"kill_timeout_ms": 2000}),
    (["--wait-ready"], {"wait_ready": True}),
    (["--listen-timeout", "4000"], {"listen_timeout_ms": 4000}),
    (["--min-uptime", "2s"], {"min_uptime_ms": 2000}),
    (["--max-restarts", "3"], {"max_restarts": 3}),
    (["--kill-signal", "SIGTERM"], {"kill_signal": "SIGTERM"}),
    (["--interpreter", "node"], {"interpreter": NODE}),
]


@needs_node
@pytest.mark.parametrize(
    ("flags", "expected"), LESSON_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_direct_form_flag_is_in_show_settings(
    tmp_path: Path, run_master, flags: list[str], expected: dict[str, Any]
) -> None:
    """Each pm2 start flag of the lesson, given to `start SCRIPT`, is what `show --json` resolved."""
    script = tmp_path / "app.js"
    script.write_text(NODE_APP)
    ctl = tmp_path / "ctl.sock"
    m = run_master("start", str(script), *flags, "--control", str(ctl), "--no-auto-exit")
    m.wait_event("runtime_started")
    name = expected.get("name", "app")
    got = settings(ctl, name)
    assert {key: got[key] for key in expected} == expected
    if "interpreter_args" in expected:  # it really reached node
        assert worker_record(m, name, "execArgv")["execArgv"] == ["--max-old-space-size=64"]
    if expected.get("wait_ready"):  # process.send('ready') is the ready signal
        m.wait_event("worker_ready", app=name)


@needs_node
def test_lesson_flags_together(tmp_path: Path, run_master) -> None:
    """The lesson's flags on one line all apply, and the worker runs with them."""
    script = tmp_path / "app.js"
    script.write_text(NODE_APP)
    ctl = tmp_path / "ctl.sock"
    m = run_master(
        "start", str(script), "-n", "api", "--max-memory-restart", "100M",
        "--exp-backoff-restart-delay", "100", "--no-autorestart", "--stop-exit-codes", "0", "3",
        "--node-args=--max-old-space-size=64", "-c", "0 3 * * *", "--kill-timeout", "2s",
        "--wait-ready", "--control", str(ctl),
    )  # fmt: skip
    m.wait_event("worker_ready", app="api")
    got = settings(ctl, "api")
    assert got["autorestart"] is False
    assert got["stop_exit_codes"] == [0, 3]
    assert got["argv"] == [NODE, "--max-old-space-size=64", str(script)]
    assert worker_record(m, "api", "execArgv")["said"] == "hello undefined"
    assert m.events("cron_scheduled", app="api")[0]["expression"] == "0 3 * * *"


@needs_node
def test_no_autostart_in_the_direct_form(tmp_path: Path, run_master) -> None:
    """`start SCRIPT --no-autostart` registers the app stopped; `start NAME` runs it."""
    script = tmp_path / "app.js"
    script.write_text(NODE_APP)
    ctl = tmp_path / "ctl.sock"
    m = run_master("start", str(script), "--no-autostart", "--control", str(ctl))
    m.wait_event("runtime_started")
    [row] = rows(ctl)
    assert (row["status"], row["pid"]) == ("stopped", None)
    cli(ctl, "start", "app")
    m.wait_event("worker_ready", app="app")
    assert worker_record(m, "app", "said")["said"] == "hello undefined"


# --- switching the env context on a live runtime ------------------------------------------


def message_app(tmp_path: Path, port: int, **extra: Any) -> Path:
    script = tmp_path / "server.py"
    script.write_text(MESSAGE_SERVER)
    return write_ecosystem(
        tmp_path / "ecosystem.json",
        [{
            "name": "web", "script": str(script), "instances": 2,
            "listen": [f"127.0.0.1:{port}"], "env": {"PORT": str(port), "MESSAGE": "base"},
            "env_homolog": {"MESSAGE": "homolog"}, "env_production": {"MESSAGE": "production"},
            **extra,
        }],
    )  # fmt: skip


def test_restart_and_reload_with_env_change_what_the_app_serves(tmp_path: Path, run_master) -> None:
    """`restart NAME --env X`, then `reload NAME --env Y`, switch env_ contexts live; SIGHUP keeps Y."""
    port = free_port()
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(message_app(tmp_path, port)), "--control", str(ctl))
    wait_serving(m, port, "base -")
    cli(ctl, "restart", "web", "--env", "homolog")
    wait_serving(m, port, "homolog -")
    before = {r["pid"] for r in rows(ctl)}
    cli(ctl, "reload", "web", "--env", "production")
    wait_serving(m, port, "production -")
    assert before.isdisjoint(r["pid"] for r in rows(ctl))  # a rolling reload: new workers
    assert settings(ctl, "web")["env"]["MESSAGE"] == "production"
    reloads = len(m.events("reload_done", app="web"))
    m.signal(signal.SIGHUP)
    m.wait_event("reload_done", count=reloads + 1, app="web")
    wait_serving(m, port, "production -")


def test_update_env_gives_the_apps_the_clients_environment(tmp_path: Path, run_master) -> None:
    """`restart NAME --update-env` passes a variable of the client's shell to the app; SIGHUP keeps it."""
    port = free_port()
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(message_app(tmp_path, port)), "--control", str(ctl))
    wait_serving(m, port, "base -")
    os.environ["EXTRA"] = "from-the-shell"
    try:
        cli(ctl, "restart", "web", "--update-env")
    finally:
        del os.environ["EXTRA"]
    wait_serving(m, port, "base from-the-shell")
    reloads = len(m.events("reload_done", app="web"))
    m.signal(signal.SIGHUP)
    m.wait_event("reload_done", count=reloads + 1, app="web")
    wait_serving(m, port, "base from-the-shell")


def test_update_env_after_env_keeps_the_env_context(tmp_path: Path, run_master) -> None:
    """`restart --env X`, then `restart --update-env`: the app keeps env_X, as pm2 keeps it."""
    port = free_port()
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(message_app(tmp_path, port)), "--control", str(ctl))
    wait_serving(m, port, "base -")
    cli(ctl, "restart", "web", "--env", "homolog")
    wait_serving(m, port, "homolog -")
    os.environ["EXTRA"] = "shell"
    try:
        cli(ctl, "restart", "web", "--update-env")
    finally:
        del os.environ["EXTRA"]
    wait_serving(m, port, "homolog shell", timeout=8)


def test_restart_with_env_of_an_unknown_app_changes_nothing(tmp_path: Path, run_master) -> None:
    """`restart nope --env X` is one line and exit 1; the running app keeps its env and pids."""
    port = free_port()
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(message_app(tmp_path, port)), "--control", str(ctl))
    wait_serving(m, port, "base -")
    before = [r["pid"] for r in rows(ctl)]
    proc = cli(ctl, "restart", "nope", "--env", "homolog", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "runtime: unknown app or id 'nope' (apps: web)"
    assert [r["pid"] for r in rows(ctl)] == before
    assert get(port) == "base -"


# --- autostart, uid, filter_env, append_env_to_name ---------------------------------------


def test_autostart_false_is_listed_stopped_and_starts_by_name(tmp_path: Path, run_master) -> None:
    """`autostart: false`: listed stopped, never ran, keeps the master up; `start NAME` runs it."""
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(
        tmp_path / "ecosystem.json",
        [{"name": "api", **py(SLEEPER)},
         {"name": "migrate", **py("print('migrating', flush=True)\nimport time\ntime.sleep(60)"),
          "autostart": False}],
    )  # fmt: skip
    m = run_master(str(eco), "--control", str(ctl))
    m.wait_event("worker_ready", app="api")
    listed = {r["name"]: r for r in rows(ctl)}
    assert (listed["migrate"]["status"], listed["migrate"]["pid"]) == ("stopped", None)
    assert m.events("worker_started", app="migrate") == []
    assert m.lines("migrate") == []
    cli(ctl, "stop", "api")
    time.sleep(1.0)
    assert m.proc.poll() is None  # a stopped app waiting for `start NAME` is not an ending
    cli(ctl, "start", "migrate")
    m.wait_for(lambda: any(r.get("message") == "migrating" for r in m.lines("migrate")))
    m.wait_event("worker_ready", app="migrate")
    assert next(r for r in rows(ctl) if r["name"] == "migrate")["status"] == "online"


def test_only_autostart_false_apps_keep_the_master_up(tmp_path: Path, run_master) -> None:
    """A file whose every app has `autostart: false` starts nothing and does not auto-exit."""
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(
        tmp_path / "ecosystem.json", [{"name": "later", **py(SLEEPER), "autostart": False}]
    )
    m = run_master(str(eco), "--control", str(ctl))
    m.wait_event("runtime_started")
    time.sleep(1.5)
    assert m.proc.poll() is None
    assert [r["status"] for r in rows(ctl)] == ["stopped"]
    cli(ctl, "start", "later")
    m.wait_event("worker_ready", app="later")


@pytest.mark.skipif(os.geteuid() != 0, reason="running an app as nobody needs a root master")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason=f"needs {SYSTEM_PYTHON}")
@pytest.mark.parametrize("key", ["uid", "user"])
def test_user_nobody_as_root_runs_the_worker_as_nobody(
    tmp_path: Path, run_master, key: str
) -> None:
    """`uid`/`user: nobody` under a root master: the worker's uid and gid are 65534, HOME nobody's."""
    eco = write_ecosystem(
        tmp_path / "ecosystem.json",
        [{"name": "low", "script": SYSTEM_PYTHON, "interpreter": "none", "args": ["-c", WHO_AM_I],
          "cwd": "/", key: "nobody"}],
    )  # fmt: skip
    m = run_master(str(eco), "--control", str(tmp_path / "ctl.sock"))
    seen = worker_record(m, "low", "uid")
    assert (seen["uid"], seen["gid"]) == (NOBODY, NOBODY)
    assert seen["home"] == "/nonexistent"
    [started] = m.wait_event("worker_started", app="low")
    assert os.stat(f"/proc/{started['pid']}").st_uid == NOBODY


def test_user_without_root_is_a_config_error(tmp_path: Path) -> None:
    """A master that is not root refuses `user: nobody` with one line and exit 78."""
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("needs setpriv to run the master as another user")
        # nobody, keeping the right to read the venv under /root (and nothing else)
        drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]  # fmt: skip
    else:
        drop = []
    eco = write_ecosystem(
        tmp_path / "ecosystem.json", [{"name": "low", **py(SLEEPER), "user": "nobody"}]
    )
    proc = subprocess.run(
        [*drop, sys.executable, "-m", "runtime", "start", str(eco), "--control",
         str(tmp_path / "ctl.sock")],
        capture_output=True, text=True, timeout=30, cwd="/",
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    if proc.returncode != 78 and "setpriv" in proc.stderr:
        pytest.skip(f"setpriv cannot drop to nobody here: {proc.stderr.strip()}")
    assert proc.returncode == 78, proc.stderr
    uid = NOBODY if drop else os.geteuid()
    assert proc.stderr.strip() == (
        f"runtime: {eco}: apps[0] (low).uid: the runtime runs as uid {uid}; "
        "running an app as another user needs root"
    )


def test_filter_env_as_seen_by_the_worker(tmp_path: Path, run_master) -> None:
    """`filter_env`: a list drops names containing a part, a string one name, `true` everything."""
    eco = write_ecosystem(
        tmp_path / "ecosystem.json",
        [{"name": "no-secrets", **py(WHO_AM_I), "filter_env": ["SECRET", "AWS_"],
          "env": {"MESSAGE": "kept"}},
         {"name": "filter-all", **py(WHO_AM_I), "filter_env": True, "env": {"MESSAGE": "kept"}},
         {"name": "no-home", **py(WHO_AM_I), "filter_env": "HOME"}],
    )  # fmt: skip
    secrets = {"AWS_SECRET_ACCESS_KEY": "a", "APP_SECRET": "b", "AWS_REGION": "c"}
    m = run_master(str(eco), "--control", str(tmp_path / "ctl.sock"), env=secrets)
    names = {app: set(worker_record(m, app, "names")["names"]) for app in
             ("no-secrets", "filter-all", "no-home")}  # fmt: skip
    assert not names["no-secrets"] & set(secrets)
    assert {"PATH", "HOME", "MESSAGE"} <= names["no-secrets"]
    assert not names["filter-all"] & {"PATH", "HOME", *secrets}
    assert {"MESSAGE", "RUNTIME_APP"} <= names["filter-all"]  # the app's own and the runtime's
    assert "HOME" not in names["no-home"]
    assert {"PATH", *secrets} <= names["no-home"]


@pytest.mark.parametrize(
    ("args", "name"), [(["--env", "production"], "api-production"), ([], "api")]
)
def test_append_env_to_name_as_seen_by_the_worker(
    tmp_path: Path, run_master, args: list[str], name: str
) -> None:
    """`append_env_to_name`: with `--env production` the app is `api-production`, else `api`."""
    eco = write_ecosystem(
        tmp_path / "ecosystem.json",
        [{"name": "api", **py(WHO_AM_I), "append_env_to_name": True,
          "env_production": {"NODE_ENV": "production"}}],
    )  # fmt: skip
    ctl = tmp_path / "ctl.sock"
    m = run_master(str(eco), *args, "--control", str(ctl))
    assert worker_record(m, name, "app")["app"] == name
    assert [r["name"] for r in rows(ctl)] == [name]


# --- list after delete, usage errors -------------------------------------------------------


def test_list_after_the_last_delete(tmp_path: Path, run_master) -> None:
    """`delete` of the last app exits 0; `list` then prints the header alone and exits 0."""
    ctl = tmp_path / "ctl.sock"
    eco = write_ecosystem(tmp_path / "ecosystem.json", [{"name": "only", **py(SLEEPER)}])
    m = run_master("start", str(eco), "--control", str(ctl))
    [started] = m.wait_event("worker_started", app="only")
    deleted = cli(ctl, "delete", "only", check=False)
    assert deleted.returncode == 0, deleted.stderr
    assert "Traceback" not in deleted.stderr
    assert not pid_alive(started["pid"])
    listed = cli(ctl, "list", check=False)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert listed.stdout.split() == LIST_HEADER
    assert json.loads(cli(ctl, "list", "--json").stdout) == []
    assert m.proc.poll() is None


def test_usage_errors_of_the_run_command(tmp_path: Path) -> None:
    """`--only ''`, `start FILE -i 3` and pm2.io's `--secret` exit 2 with one line each."""
    eco = tmp_path / "eco.yml"
    eco.write_text(f"apps:\n  - script: {sys.executable}\n    args: ['-c', 'pass']\n")
    cases = {
        ("start", str(eco), "--only", ""): "runtime: --only expects app names, got ''",
        ("start", str(eco), "-i", "3"): (
            "runtime: --instances applies to a script (the direct form), not to a file"
        ),
        ("start", str(eco), "--secret", "x"): (
            "runtime: --secret: pm2.io monitoring is not part of this runtime "
            "(see --web: /metrics, /status)"
        ),
    }
    for args, line in cases.items():
        proc = runtime(*args, "--control", str(tmp_path / "ctl.sock"))
        assert (proc.returncode, proc.stderr.strip(), proc.stdout) == (2, line, ""), args


# --- pm2's lenient files, run -----------------------------------------------------------------


def _run_fixture(tmp_path: Path, run_master, fixture: str, *args: str, **env: str) -> Master:
    folder = tmp_path / "fx"
    shutil.copytree(FIXTURES, folder)
    return run_master(
        "start", fixture, *args, "--control", str(tmp_path / "ctl.sock"), cwd=folder,
        env={"PORT": str(free_port()), **env},
    )  # fmt: skip


FIXTURE_RUNS = [
    ("comments.json", "api", "env", {"MESSAGE": "see http://127.0.0.1:8080/docs",
                                     "NODE_ENV": "development"}),
    ("named-export.config.mjs", "api", "env", {"MESSAGE": "from export const apps"}),
    ("default-export.config.mjs", "api", "env", {"MESSAGE": "from export default"}),
    ("dotenv-like.config.js", "api", "env", {"FROM_LOADER": "loaded", "NODE_ENV": "staging",
                                             "MESSAGE": "node env is staging"}),
    ("env-mutation.config.js", "api", "env", {"FOO": "bar"}),
    ("interpreter-none.json", "hello-cmd", "argv", ["--greeting", "hi"]),
    ("node-args-shell.json", "api", "execArgv", []),
    ("name-with-spaces.json", "My API server", "app", "My API server"),
]  # fmt: skip


@needs_node
@pytest.mark.parametrize(
    ("fixture", "app", "key", "expected"),
    FIXTURE_RUNS,
    ids=lambda v: v if isinstance(v, str) and "." in v else "",
)
def test_lenient_fixture_runs(
    tmp_path: Path, run_master, fixture: str, app: str, key: str, expected: Any
) -> None:
    """A file pm2 accepts runs here, and the worker's own line shows what pm2 would give it."""
    m = _run_fixture(tmp_path, run_master, fixture)
    seen = worker_record(m, app, key)[key]
    if isinstance(expected, dict):
        assert {k: seen.get(k) for k in expected} == expected
    else:
        assert seen == expected


MESSAGE_RUNS = [
    ("script-dir-main.json", "api", "api main started"),
    ("script-dir-index.json", "worker", "worker index started"),
    ("bin-www.json", "www", "www would listen on 3000"),
]


@needs_node
@pytest.mark.parametrize(
    ("fixture", "app", "message"), MESSAGE_RUNS, ids=[r[0] for r in MESSAGE_RUNS]
)
def test_script_fixture_runs_with_node(
    tmp_path: Path, run_master, fixture: str, app: str, message: str
) -> None:
    """A directory or an extension-less 644 script runs with node: its own line proves which file."""
    m = _run_fixture(tmp_path, run_master, fixture)
    m.wait_for(lambda: any(r.get("message") == message for r in m.lines(app)), what=message)


@needs_node
def test_instances_with_a_trailing_comma_runs_four(tmp_path: Path, run_master) -> None:
    """`instances: "4,"` runs four instances (pm2's parseInt), each with its NODE_APP_INSTANCE."""
    m = _run_fixture(tmp_path, run_master, "instances-trailing-comma.json")
    m.wait_for(lambda: len([r for r in m.lines("api") if "env" in r]) >= 4, what="4 workers")
    instances = sorted(r["env"]["NODE_APP_INSTANCE"] for r in m.lines("api") if "env" in r)
    assert instances == ["0", "1", "2", "3"]
    assert any("'4,'" in r.get("message", "") for r in m.wait_event("config_warning"))


@needs_node
def test_both_restart_delays_back_off_exponentially(tmp_path: Path, run_master) -> None:
    """`restart_delay` with `exp_backoff_restart_delay`: the backoff is used (100, 150, 225 ms)."""
    m = _run_fixture(tmp_path, run_master, "restart-delay-both.json")
    scheduled = m.wait_event("restart_scheduled", count=3, app="flaky")
    assert [r["delay_ms"] for r in scheduled[:3]] == [100, 150, 225]
    assert any("restart_delay" in r["message"] for r in m.events("config_warning"))


@needs_node
def test_monitoring_keys_say_no_effect_and_camel_case_applies(tmp_path: Path, run_master) -> None:
    """pm2's log and monitoring keys warn "no effect here"; `maxMemoryRestart` is applied."""
    m = _run_fixture(tmp_path, run_master, "monitoring-keys.json")
    warnings = [r["message"] for r in m.wait_event("config_warning", count=7)]
    for key in ("outFile", "errorFile", "mergeLogs", "v8", "event_loop_inspector",
                "deep_monitoring", "install_url"):  # fmt: skip
        assert any(f"'{key}' has no effect here" in w for w in warnings), key
    assert not any("unknown key" in w for w in warnings)
    got = settings(tmp_path / "ctl.sock", "api")
    assert got["max_memory_restart_bytes"] == 200 * 1024 * 1024


@needs_node
def test_filter_env_fixture_as_pm2_documents_it(tmp_path: Path, run_master) -> None:
    """filter-env.json: secrets gone from `no-secrets`, everything from `filter-all`, HOME from `no-home`."""
    m = _run_fixture(
        tmp_path, run_master, "filter-env.json", AWS_SECRET_ACCESS_KEY="dummy", APP_SECRET="dummy"
    )
    seen = {
        app: worker_record(m, app, "env")["env"] for app in ("no-secrets", "filter-all", "no-home")
    }
    assert (seen["no-secrets"]["AWS_SECRET_ACCESS_KEY_SET"], seen["no-secrets"]["HOME_SET"]) == (
        False,
        True,
    )
    assert seen["no-secrets"]["MESSAGE"] == "filtered"
    assert (seen["filter-all"]["HOME_SET"], seen["filter-all"]["PATH_SET"]) == (False, False)
    assert (seen["no-home"]["HOME_SET"], seen["no-home"]["AWS_SECRET_ACCESS_KEY_SET"]) == (
        False,
        True,
    )


@needs_node
def test_execute_command_runs_fork_instances(tmp_path: Path, run_master) -> None:
    """execute-command.json: `instances: 2` with `execute_command: true` runs 2 fork workers."""
    m = _run_fixture(tmp_path, run_master, "execute-command.json")
    m.wait_event("worker_ready", count=2, app="api")
    assert [(r["mode"], r["instance"]) for r in rows(tmp_path / "ctl.sock")] == [
        ("fork", 0),
        ("fork", 1),
    ]
