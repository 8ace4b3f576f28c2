"""runtime.observe.metrics on real process trees: RSS of a worker and all of its descendants."""

from __future__ import annotations

import subprocess
import time

import psutil

from runtime.observe.metrics import sample_tree, tree_rss


def _tree() -> subprocess.Popen[bytes]:
    """`sh` with two sleeping children: a tree of three processes, each settled (a child
    still `sh` between its fork and its exec of `sleep` changes size under the test)."""
    proc = subprocess.Popen(["/bin/sh", "-c", "sleep 30 & sleep 30 & wait"])
    deadline = time.monotonic() + 10
    while not _settled(psutil.Process(proc.pid)):
        assert time.monotonic() < deadline, "the children never started"
        time.sleep(0.01)
    return proc


def _settled(root: psutil.Process) -> bool:
    children = root.children()
    try:
        return len(children) == 2 and all(c.name() == "sleep" for c in children)
    except psutil.NoSuchProcess:
        return False


def test_tree_rss_sums_every_process_of_the_tree() -> None:
    """The figure is the root's RSS plus each descendant's, as psutil reads them."""
    proc = _tree()
    try:
        root = psutil.Process(proc.pid)
        expected = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        got = tree_rss(proc.pid)
        assert got is not None
        assert abs(got - expected) <= 64 * 1024  # sleeping processes: a page or two at most
        assert got > root.memory_info().rss  # the children are really counted
        sample = sample_tree(proc.pid, now=0.0)
        assert sample is not None
        assert sample.processes == 3
        assert abs(sample.rss_bytes - got) <= 64 * 1024
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait(5)


def test_tree_rss_of_a_gone_process_is_none() -> None:
    """Once the root has exited and been reaped there is nothing to measure."""
    proc = subprocess.Popen(["/bin/true"])
    proc.wait(5)
    assert tree_rss(proc.pid) is None
