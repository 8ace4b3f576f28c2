"""Where the control socket lives, and that no other user can pose as the runtime (#13, fault 8).

The attacks need a real second uid: they run as root and use `nobody` (skipped otherwise).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runtime.control.protocol import control_dir, untrusted_dir, untrusted_socket
from tests.integration.conftest import ROOT, Master, py, write_ecosystem

NOBODY = 65534
SLEEPER = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (uid nobody)"
)
# an impostor: answers every request as a runtime would, and notes what it was asked
IMPOSTOR = """
import socket, sys
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(sys.argv[1])
server.listen(8)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    with conn:
        data = conn.recv(65536)
        print("asked", data[:40], flush=True)
        conn.sendall(b'{"ok": true, "result": []}\\n')
"""


def env_without_control(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNTIME_CONTROL", "XDG_RUNTIME_DIR")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


def runtime(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=cwd,
    )


def as_nobody(*command: str) -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory under /tmp that `nobody` can reach (pytest's tmp_path is root's 0700)."""
    path = Path(tempfile.mkdtemp(prefix="runtime-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_root_prefers_run_and_others_get_their_own_tmp_dir() -> None:
    """Without XDG_RUNTIME_DIR, root's default is /run/runtime when /run is writable (no other
    user can create it first), anyone else's /tmp/runtime-UID; XDG_RUNTIME_DIR wins."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        assert control_dir({}) == "/run/runtime"
    else:
        assert control_dir({}) == f"/tmp/runtime-{os.geteuid()}"
    assert control_dir({"XDG_RUNTIME_DIR": "/"}) == "/runtime"


@pytest.mark.parametrize(
    ("mode", "trusted"),
    [
        (0o700, True),
        (0o755, True),
        (0o711, True),
        (0o770, False),
        (0o777, False),
        (0o1777, os.geteuid() == 0),
    ],
)
def test_a_directory_writable_by_others_is_not_trusted(
    tmp_path: Path, mode: int, trusted: bool
) -> None:
    """Our own directory is trusted unless group or others may write to it (but root's sticky
    directories, as /tmp, are: nobody else may remove or replace what is in them)."""
    tmp_path.chmod(mode)
    assert (untrusted_dir(str(tmp_path)) is None) is trusted
    tmp_path.chmod(0o700)


def test_root_sticky_tmp_is_trusted_and_a_file_is_not_a_directory(tmp_path: Path) -> None:
    """/tmp (root's, sticky) may hold a socket; a regular file is no directory."""
    assert untrusted_dir("/tmp") is None
    (tmp_path / "f").write_text("")
    assert untrusted_dir(str(tmp_path / "f")) == "is not a directory"


@needs_root
def test_the_master_refuses_a_directory_another_user_made(shared_dir: Path) -> None:
    """A control directory of nobody's, or a symlink of nobody's: the master refuses to
    start, in one line, exit 1, and starts no worker."""
    eco = write_ecosystem(shared_dir / "eco.json", [{"name": "w", **py(SLEEPER)}])
    planted = shared_dir / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, NOBODY, NOBODY)
    link = shared_dir / "link"
    link.symlink_to(shared_dir)
    os.lchown(link, NOBODY, NOBODY)
    for directory, reason in (
        (planted, "is owned by uid 65534"),
        (link, "is a symlink owned by uid 65534"),
    ):
        proc = runtime(
            str(eco), "--control", str(directory / "ctl.sock"), env=env_without_control()
        )
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(f"runtime: control directory {directory} {reason}")
        assert proc.stdout == ""
    assert not (planted / "ctl.sock").exists()


@needs_root
def test_the_default_directory_planted_by_another_user_is_refused_by_both_sides(
    shared_dir: Path,
) -> None:
    """nobody makes root's default control directory first and serves a fake socket in it:
    root's master refuses to start and root's `stop all` refuses to talk, telling the impostor nothing."""
    xdg = shared_dir / "xdg"
    xdg.mkdir(mode=0o777)
    xdg.chmod(0o777)
    planted = xdg / "runtime"
    subprocess.run(as_nobody("mkdir", "-m", "0755", str(planted)), check=True, timeout=10)
    env = env_without_control(XDG_RUNTIME_DIR=str(xdg))
    impostor = subprocess.Popen(
        as_nobody(sys.executable, "-c", IMPOSTOR, str(planted / "eco-00000000.sock")),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline().strip() == "listening"
        stop = runtime("stop", "all", env=env)
        assert stop.returncode == 1
        assert stop.stderr.startswith(f"runtime: refusing {planted}: it is owned by uid 65534")
        eco = write_ecosystem(shared_dir / "eco.json", [{"name": "w", **py(SLEEPER)}])
        master = runtime(str(eco), env=env)
        assert master.returncode == 1
        assert master.stderr.startswith(
            f"runtime: control directory {planted} is owned by uid 65534"
        )
    finally:
        impostor.terminate()
        out, _ = impostor.communicate(timeout=10)
    assert "asked" not in out


@needs_root
def test_a_socket_file_of_another_user_is_refused(shared_dir: Path) -> None:
    """In a sticky root-owned directory (as /tmp), a socket nobody made is not talked to."""
    sticky = shared_dir / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    path = sticky / "ctl.sock"
    impostor = subprocess.Popen(
        as_nobody(sys.executable, "-c", IMPOSTOR, str(path)), stdout=subprocess.PIPE, text=True
    )
    try:
        assert impostor.stdout is not None
        assert impostor.stdout.readline().strip() == "listening"
        assert untrusted_socket(str(path)) is not None
        proc = runtime("stop", "all", "--control", str(path), env=env_without_control())
        assert proc.returncode == 1
        assert proc.stderr == (
            f"runtime: refusing to talk to {path}: it is owned by uid 65534, not by uid 0 or root\n"
        )
    finally:
        impostor.terminate()
        out, _ = impostor.communicate(timeout=10)
    assert "asked" not in out


def test_the_master_makes_its_directory_private(
    tmp_path: Path, run_master: Callable[..., Master]
) -> None:
    """A control directory the master creates is 0700 and its own; the socket is 0600."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", **py(SLEEPER)}])
    ctl = tmp_path / "made" / "ctl.sock"
    master = run_master(str(eco), "--control", str(ctl))
    master.wait_event("worker_ready")
    st = (tmp_path / "made").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (os.geteuid(), 0o700)
    assert ctl.stat().st_mode & 0o777 == 0o600
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0
    deadline = time.monotonic() + 5
    while ctl.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ctl.exists()
