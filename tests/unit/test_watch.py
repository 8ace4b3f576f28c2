"""File watching: ignore globs, the debounce, and the inotify tree watcher on a real directory."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import pytest
import uvloop

from runtime.devloop.watch import Batch, Debounce, IgnoreRules, TreeWatcher, glob_to_regex

# ----- globs and ignore rules ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.pyc", "x.pyc", True),
        ("*.pyc", "a/x.pyc", False),  # a component pattern is applied per component
        ("logs/*.log", "logs/a.log", True),
        ("logs/*.log", "logs/sub/a.log", False),
        ("logs/**", "logs/sub/a.log", True),
        ("**/*.tmp", "a/b/c.tmp", True),
        ("**/*.tmp", "c.tmp", True),
        ("a/**/b", "a/b", True),
        ("a/**/b", "a/x/y/b", True),
        ("file?.txt", "file1.txt", True),
        ("file?.txt", "file10.txt", False),
        ("[!a]*", "bcd", True),
        ("[!a]*", "abc", False),
        ("[ab].js", "b.js", True),
        ("a+b(c)", "a+b(c)", True),
    ],
    ids=lambda v: str(v),
)
def test_glob_to_regex(pattern: str, path: str, matches: bool) -> None:
    """Globs translate to path regexes where `*` stays in one component and `**` crosses."""
    assert bool(re.fullmatch(glob_to_regex(pattern), path)) is matches


@pytest.mark.parametrize(
    ("user", "path", "ignored"),
    [
        ((), "app.py", False),
        ((), "src/app.py", False),
        ((), "node_modules/x.js", True),
        ((), "a/node_modules/b/c.js", True),
        ((), ".git/HEAD", True),
        ((), "pkg/__pycache__/m.cpython-311.pyc", True),
        ((), "x.pyc", True),
        ((), ".venv/lib/site.py", True),
        ((), "src/.app.py.swp", True),
        ((), "app.py~", True),
        ((), ".#app.py", True),
        ((), "4913", True),  # vim's probe file
        (("logs",), "logs/out.log", True),
        (("logs",), "src/logs/out.log", True),
        (("./logs/",), "logs/out.log", True),
        (("logs/*.log",), "logs/out.log", True),
        (("logs/*.log",), "src/logs/out.log", False),
        (("build/**",), "build/a/b.js", True),
        (("**/*.tmp",), "a/b/c.tmp", True),
        (("*.md",), "README.md", True),
        (("*.md",), "docs/x.py", False),
        (("tmp/cache",), "tmp/cache/x", True),
        (("tmp/cache",), "tmp/other", False),
    ],
    ids=lambda v: str(v),
)
def test_ignore_rules(user: tuple[str, ...], path: str, ignored: bool) -> None:
    """Defaults and the user's globs ignore a path when it or a parent directory matches."""
    assert IgnoreRules.compile(user).ignored(path) is ignored


def test_ignore_rules_without_defaults() -> None:
    """With defaults off only the user's patterns count."""
    rules = IgnoreRules.compile(["*.log"], defaults=False)
    assert not rules.ignored("node_modules/x.js")
    assert rules.ignored("a.log")
    assert not IgnoreRules.compile([], defaults=False).ignored("x.pyc")


# ----- debounce -----------------------------------------------------------------------


def test_debounce_burst_is_one_batch() -> None:
    """Twenty changes 5 ms apart are one batch, due one quiet period after the last."""
    d = Debounce(quiet_s=0.1, max_wait_s=1.0)
    assert d.deadline() is None
    for i in range(20):
        d.add(f"f{i % 3}.py", now=10.0 + i * 0.005)
        assert d.take(10.0 + i * 0.005) is None
    assert d.deadline() == pytest.approx(10.095 + 0.1)
    assert d.take(10.19) is None
    assert d.take(10.2) == Batch(paths=("f0.py", "f1.py", "f2.py"), events=20)
    assert d.deadline() is None
    assert d.take(11.0) is None


def test_debounce_separate_bursts() -> None:
    """Changes farther apart than the quiet period make separate batches."""
    d = Debounce(quiet_s=0.05, max_wait_s=1.0)
    d.add("a", 0.0)
    assert d.take(0.05) == Batch(("a",), 1)
    d.add("b", 0.5)
    assert d.take(0.6) == Batch(("b",), 1)


def test_debounce_max_wait_caps_endless_changes() -> None:
    """A path that never stops changing is still restarted for once `max_wait_s` has passed."""
    d = Debounce(quiet_s=0.1, max_wait_s=1.0)
    t = 0.0
    while t < 0.99:
        d.add("busy.db", t)
        assert d.take(t) is None
        t += 0.05
    d.add("busy.db", 1.0)
    assert d.deadline() == pytest.approx(1.0)
    assert d.take(1.0) == Batch(("busy.db",), 21)


# ----- the inotify watcher on a real tree ----------------------------------------------


def _collect(
    root: Path, rules: IgnoreRules, roots: list[str] | None = None
) -> tuple[TreeWatcher, list[str], asyncio.Event]:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    got = asyncio.Event()

    def on_change(paths: list[str]) -> None:
        seen.extend(paths)
        got.set()

    watcher = TreeWatcher(roots or [str(root)], rules, on_change, loop, base=str(root))
    watcher.start()
    return watcher, seen, got


async def _settle(got: asyncio.Event, limit_s: float = 2.0) -> None:
    """Wait for a first change, then a moment for the rest of the burst."""
    async with asyncio.timeout(limit_s):
        await got.wait()
    await asyncio.sleep(0.05)


async def _quiet(seen: list[str]) -> None:
    await asyncio.sleep(0.2)
    assert seen == []


def _run(coro_fn: Callable[[], Coroutine[object, object, None]]) -> None:
    """On uvloop, as the master runs, in debug mode so a blocking call is reported."""
    uvloop.run(coro_fn(), debug=True)


def test_watcher_reports_file_writes_in_subdirectories(tmp_path: Path) -> None:
    """A write anywhere under the root is reported with its absolute path."""
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    target = tmp_path / "src" / "pkg" / "mod.py"

    async def main() -> None:
        watcher, seen, got = _collect(tmp_path, IgnoreRules.compile([]))
        try:
            target.write_text("x = 1\n")
            await _settle(got)
            assert str(target) in seen
        finally:
            watcher.close()

    _run(main)


def test_watcher_skips_ignored_paths_and_never_descends_into_them(tmp_path: Path) -> None:
    """Writes under node_modules or to *.pyc are silent, and node_modules gets no watch."""
    (tmp_path / "node_modules" / "dep").mkdir(parents=True)

    async def main() -> None:
        watcher, seen, _ = _collect(tmp_path, IgnoreRules.compile(["*.log"]))
        try:
            assert watcher.stats.dirs == 1
            (tmp_path / "node_modules" / "x.js").write_text("1")
            (tmp_path / "node_modules" / "dep" / "y.js").write_text("1")
            (tmp_path / "x.pyc").write_bytes(b"\0")
            (tmp_path / "out.log").write_text("line\n")
            (tmp_path / ".app.py.swp").write_text("")
            await _quiet(seen)
        finally:
            watcher.close()

    _run(main)


def test_watcher_follows_new_directories(tmp_path: Path) -> None:
    """A directory created after start is watched too (recursive watches)."""

    async def main() -> None:
        watcher, seen, got = _collect(tmp_path, IgnoreRules.compile([]))
        try:
            (tmp_path / "new" / "deeper").mkdir(parents=True)
            await _settle(got)
            seen.clear()
            got.clear()
            (tmp_path / "new" / "deeper" / "f.py").write_text("1")
            await _settle(got)
            assert str(tmp_path / "new" / "deeper" / "f.py") in seen
        finally:
            watcher.close()

    _run(main)


def test_watcher_file_root_survives_atomic_replace(tmp_path: Path) -> None:
    """A watched file replaced by rename (as editors save) is reported, every time."""
    app = tmp_path / "app.py"
    app.write_text("v0")
    (tmp_path / "other.py").write_text("")

    async def main() -> None:
        watcher, seen, got = _collect(tmp_path, IgnoreRules.compile([]), roots=[str(app)])
        try:
            (tmp_path / "other.py").write_text("sibling")
            await _quiet(seen)
            for version in ("v1", "v2"):
                tmp = tmp_path / "app.py.tmp"
                tmp.write_text(version)
                os.replace(tmp, app)
                await _settle(got)
                assert seen == [str(app)]
                seen.clear()
                got.clear()
        finally:
            watcher.close()

    _run(main)


def test_watcher_setup_of_a_large_tree_is_fast(tmp_path: Path) -> None:
    """200 directories get their watches in well under a second (one per directory, not file)."""
    for d in range(200):
        sub = tmp_path / f"d{d // 20}" / f"e{d}"
        sub.mkdir(parents=True)
        for f in range(2):
            (sub / f"f{f}.txt").write_bytes(b"")

    async def main() -> None:
        started = time.monotonic()
        watcher, _, _ = _collect(tmp_path, IgnoreRules.compile([]))
        elapsed = time.monotonic() - started
        watcher.close()
        assert watcher.stats.dirs == 1 + 10 + 200
        assert elapsed < 2.0

    _run(main)


def test_watcher_reports_a_missing_root(tmp_path: Path) -> None:
    """A watch path that does not exist yet is reported, and its creation counts as a change."""
    missing = tmp_path / "later"

    async def main() -> None:
        watcher, seen, got = _collect(tmp_path, IgnoreRules.compile([]), roots=[str(missing)])
        try:
            assert watcher.stats.missing == [str(missing)]
            missing.mkdir()
            await _settle(got)
            assert seen == [str(missing)]
            seen.clear()
            got.clear()
            (missing / "f.py").write_text("1")
            await _settle(got)
            assert seen == [str(missing / "f.py")]
        finally:
            watcher.close()

    _run(main)


def test_watcher_follows_a_renamed_directory(tmp_path: Path) -> None:
    """A directory renamed inside the tree reports changes under its new name."""
    (tmp_path / "a").mkdir()

    async def main() -> None:
        watcher, seen, got = _collect(tmp_path, IgnoreRules.compile([]))
        try:
            (tmp_path / "a").rename(tmp_path / "b")
            await _settle(got)
            assert seen == [str(tmp_path / "a"), str(tmp_path / "b")]
            seen.clear()
            got.clear()
            (tmp_path / "b" / "f.py").write_text("1")
            await _settle(got)
            assert seen == [str(tmp_path / "b" / "f.py")]
        finally:
            watcher.close()

    _run(main)
