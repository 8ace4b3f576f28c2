"""Ecosystem files that pm2 accepts load here too, as pm2 resolves them (issue #12).

Each fixture in tests/fixtures/pm2/ is a small file in one of the shapes real pm2 files
have; tests/fixtures/pm2/README.md says what pm2 7.0.4 made of each.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runtime.config.load import Ecosystem, load_ecosystem
from runtime.config.spec import AppSpec
from runtime.errors import ConfigError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pm2"
NODE = shutil.which("node")
ENV = {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/root", "APP_SECRET": "s3"}
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def load(name: str, **kwargs: object) -> Ecosystem:
    return load_ecosystem(str(FIXTURES / name), environ=ENV, **kwargs)  # type: ignore[arg-type]


def app(name: str, **kwargs: object) -> AppSpec:
    [spec] = load(name, **kwargs).apps
    return spec


def test_json_with_comments_and_trailing_commas() -> None:
    """`//` and `/* */` comments and trailing commas pass; `//` inside a string stays."""
    spec = app("comments.json")
    assert spec.env["MESSAGE"] == "see http://127.0.0.1:8080/docs"
    assert spec.env["NODE_ENV"] == "development"


def test_really_broken_json_still_names_its_line(tmp_path: Path) -> None:
    """What neither strict JSON nor JSON5 reads fails with strict JSON's line number."""
    path = tmp_path / "e.json"
    path.write_text('{"apps": [\n  {"script": }\n]}\n')
    with pytest.raises(ConfigError) as info:
        load_ecosystem(str(path), environ=ENV)
    assert str(info.value) == f"{path}: line 2: invalid JSON: Expecting value"


def test_names_with_spaces() -> None:
    """An app name with spaces is taken as it is."""
    assert app("name-with-spaces.json").name == "My API server"


@needs_node
@pytest.mark.parametrize("fixture", ["script-dir-main.json", "script-dir-index.json"])
def test_script_that_is_a_directory_runs_with_node(fixture: str) -> None:
    """A directory runs as node runs it: its package.json `main`, else index.js."""
    spec = app(fixture)
    assert os.path.basename(spec.argv[0]) == "node"
    assert os.path.isdir(spec.argv[1])
    assert spec.node


@needs_node
def test_extensionless_non_executable_script_runs_with_node() -> None:
    """Express's `bin/www` (no extension, mode 644) runs with node, as in pm2."""
    spec = app("bin-www.json")
    assert os.path.basename(spec.argv[0]) == "node"
    assert spec.argv[1].endswith("app/bin/www")


def test_extensionless_script_follows_its_shebang(tmp_path: Path) -> None:
    """A non-executable script with a `#!` line runs with what the line names."""
    (tmp_path / "job").write_text("#!/usr/bin/env python3\nprint('hi')\n")
    (tmp_path / "e.json").write_text('{"apps": [{"script": "job"}]}')
    [spec] = load_ecosystem(str(tmp_path / "e.json"), environ=ENV).apps
    assert os.path.basename(spec.argv[0]).startswith("python3")


def test_binary_non_executable_file_is_still_refused(tmp_path: Path) -> None:
    """A file with NUL bytes is not a script: one line, exit 78."""
    (tmp_path / "blob").write_bytes(b"\x7fELF\0\0\0")
    (tmp_path / "e.json").write_text('{"apps": [{"script": "blob"}]}')
    with pytest.raises(ConfigError, match="is not executable and its extension names no"):
        load_ecosystem(str(tmp_path / "e.json"), environ=ENV)


@needs_node
@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        ("default-export.config.mjs", "from export default"),
        ("named-export.config.mjs", "from export const apps"),
    ],
)
def test_esm_ecosystem(fixture: str, message: str) -> None:
    """`ecosystem.config.mjs` is imported by node: `export default` and `export const apps`."""
    assert app(fixture).env["MESSAGE"] == message


@needs_node
def test_js_ecosystem_changes_to_process_env_reach_the_apps() -> None:
    """What the file sets in process.env (directly or with a dotenv-like loader) is every
    app's, as pm2 hands it on."""
    assert app("env-mutation.config.js").env["FOO"] == "bar"
    env = app("dotenv-like.config.js").env
    assert (env["FROM_LOADER"], env["NODE_ENV"]) == ("loaded", "staging")
    assert env["MESSAGE"] == "node env is staging"


def test_both_restart_delays_use_the_exponential_one_with_a_warning() -> None:
    """`restart_delay` beside `exp_backoff_restart_delay` warns; the backoff is used."""
    eco = load("restart-delay-both.json")
    assert eco.apps[0].exp_backoff_restart_delay_ms == 100
    assert any("restart_delay: has no effect beside" in w for w in eco.warnings)


def test_instances_read_like_parseint() -> None:
    """`instances: "4,"` means 4 (pm2's parseInt), with a warning; cluster, as pm2."""
    eco = load("instances-trailing-comma.json")
    assert (eco.apps[0].instances, eco.apps[0].exec_mode) == (4, "cluster")
    assert any("instances: '4,' read as 4" in w for w in eco.warnings)


@pytest.mark.parametrize("fixture", ["interpreter-none.json", "node-args-shell.json"])
def test_command_lines_run_through_the_shell(fixture: str) -> None:
    """A command line runs through the shell, with `interpreter: none` or `node_args` too."""
    eco = load(fixture)
    assert eco.apps[0].argv == ("/bin/sh", "-c", "exec node app/hello.js --greeting hi")
    assert eco.apps[0].node  # node is the line's program: SIGINT to stop, an IPC channel
    if fixture == "node-args-shell.json":
        assert any(
            "interpreter_args: has no effect with a shell command line" in w for w in eco.warnings
        )


def test_monitoring_and_camel_case_keys_have_no_effect() -> None:
    """pm2's monitoring keys and camelCase log keys are named as having no effect here."""
    eco = load("monitoring-keys.json")
    named = {w.split("pm2 key ")[1].split(" ")[0] for w in eco.warnings if "pm2 key" in w}
    assert {"'outFile'", "'errorFile'", "'v8'", "'deep_monitoring'", "'install_url'"} <= named
    assert not any("unknown key" in w for w in eco.warnings)
    assert eco.apps[0].max_memory_restart_bytes == 200 * 1024 * 1024


def test_autostart_false_is_kept_for_the_supervisor() -> None:
    """`autostart: false` resolves; the supervisor registers the app as stopped."""
    specs = {s.name: s for s in load("autostart-false.json").apps}
    assert (specs["api"].autostart, specs["migrate"].autostart) == (True, False)


def test_filter_env() -> None:
    """Name parts leave matching master variables out; `true` leaves all of them out."""
    specs = {s.name: s for s in load("filter-env.json").apps}
    assert specs["no-secrets"].filter_env == ("SECRET", "AWS_")
    assert specs["no-secrets"].inherit_env
    assert specs["filter-all"].inherit_env is False
    assert specs["no-home"].filter_env == ("HOME",)


def test_append_env_to_name() -> None:
    """With `--env production` the app is `api-production`; without it, `api`."""
    assert app("append-env-to-name.json", env_name="production").name == "api-production"
    assert app("append-env-to-name.json").name == "api"


@pytest.mark.skipif(os.geteuid() != 0, reason="running an app as another user needs root")
def test_user_resolves_to_uid_gid_and_home() -> None:
    """`user: nobody` runs the app as nobody, with nobody's HOME (as pm2)."""
    spec = app("uid-user.json")
    assert spec.run_as is not None
    assert (spec.run_as.user, spec.run_as.uid) == ("nobody", 65534)
    assert spec.env["HOME"] == spec.run_as.home


def test_an_unreadable_default_env_file_is_a_warning(tmp_path: Path) -> None:
    """A `.env` the runtime reads on its own (pm2 never does) that does not parse is a
    warning; the file still loads."""
    (tmp_path / ".env").write_text("this is not an assignment\n")
    (tmp_path / "e.json").write_text('{"apps": [{"script": "sleep 1"}]}')
    eco = load_ecosystem(str(tmp_path / "e.json"), environ=ENV)
    assert eco.apps[0].env_file is None
    assert any(".env is not read (line 1: expected KEY=value" in w for w in eco.warnings)


def test_execute_command_means_fork_even_with_instances() -> None:
    """`execute_command: true` forces fork mode, as pm2's verifyConfs does, over `instances`."""
    eco = load("execute-command.json")
    spec = eco.apps[0]
    assert (spec.instances, spec.exec_mode) == (2, "fork")
    assert spec.exec_mode_why == "execute_command: true (as in pm2)"
    assert not any("execute_command" in w for w in eco.warnings)
