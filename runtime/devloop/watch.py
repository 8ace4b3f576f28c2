"""File watching for `watch:` apps: native inotify on the master's loop, no polling, no thread.

Three parts, the first two pure so tests drive them without a file system:

- `IgnoreRules`: globs matched against a path relative to the watched root (and to the
  app's cwd). A pattern without `/` matches any one path component (`node_modules`,
  `*.pyc`), one with `/` matches from the root (`logs/*.log`, `build/**`); a path is
  ignored when it or any of its parent directories is. Ignored directories are never
  descended into, so a big `node_modules` costs no inotify watch.
- `Debounce`: a burst of changes becomes one restart once the tree has been quiet for
  `quiet_s` (or `max_wait_s` after the first change, so a file that never stops
  changing still restarts the app now and then).
- `TreeWatcher`: one inotify fd read with `loop.add_reader`, a watch per directory,
  added for new directories as they appear. Files the master itself writes (its own
  stdout and stderr, when redirected to files: `own_output_files`) never count as
  changes, or every restart's log line would restart the app again. Idle, it costs
  nothing: the kernel wakes the loop only when something changes. The inotify calls go
  through ctypes (libc has had them since glibc 2.4 / musl 0.9), which keeps the master
  free of a native build.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import re
import stat
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_IGNORES",
    "Batch",
    "Debounce",
    "IgnoreRules",
    "TreeWatcher",
    "WatchStats",
    "glob_to_regex",
    "own_output_files",
]

DEFAULT_IGNORES: tuple[str, ...] = (
    "node_modules", ".git", ".hg", ".svn", "__pycache__", "*.pyc", "*.pyo", ".venv",
    ".mypy_cache", ".pytest_cache", ".ruff_cache",
    "*.swp", "*.swx", "*.swo", "*~", ".#*", "#*#", "4913", ".DS_Store",
)  # fmt: skip
OVERFLOW = "<inotify queue overflow>"

# <sys/inotify.h>
IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x0100_0000
IN_ISDIR = 0x4000_0000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
DIR_MASK = (
    IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE
    | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of NUL-padded name
READ_SIZE = 64 * 1024


# ----- ignore rules (pure) -----------------------------------------------------------


def glob_to_regex(pattern: str) -> str:
    """A glob as a regex over `/` paths: `*` and `?` stay in one component, `**` crosses."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and (end := pattern.find("]", i + 2)) > 0:
            body = pattern[i + 1 : end]
            body = "^" + body[1:] if body[0] in "!^" else body
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@dataclass(frozen=True, slots=True)
class IgnoreRules:
    """Which paths under a watched root do not count as changes."""

    component: re.Pattern[str] | None
    anchored: re.Pattern[str] | None

    @classmethod
    def compile(cls, patterns: Iterable[str], *, defaults: bool = True) -> IgnoreRules:
        """Rules from user globs (plus `DEFAULT_IGNORES` unless `defaults` is false)."""
        component: list[str] = []
        anchored: list[str] = []
        for raw in (*DEFAULT_IGNORES, *patterns) if defaults else tuple(patterns):
            pattern = raw.strip()
            while pattern.startswith("./"):
                pattern = pattern[2:]
            pattern = pattern.rstrip("/")
            if pattern.startswith("**/") and "/" not in pattern[3:]:
                pattern = pattern[3:]  # `**/x` is gitignore for "x anywhere"
            if not pattern:
                continue
            (anchored if "/" in pattern else component).append(glob_to_regex(pattern))
        return cls(
            component=re.compile("|".join(component)) if component else None,
            anchored=re.compile("|".join(anchored)) if anchored else None,
        )

    def ignored(self, rel: str) -> bool:
        """True when the relative path `rel`, or one of its parent directories, is ignored."""
        parts = [p for p in rel.split("/") if p and p != "."]
        if self.component is not None and any(self.component.fullmatch(p) for p in parts):
            return True
        if self.anchored is None:
            return False
        return any(self.anchored.fullmatch("/".join(parts[:k])) for k in range(1, len(parts) + 1))


# ----- debounce (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Batch:
    """The changes one restart answers: distinct paths in order of first change, and a count."""

    paths: tuple[str, ...]
    events: int


@dataclass(slots=True)
class Debounce:
    """Collects changes; `deadline()` says when the burst is over (times: loop seconds)."""

    quiet_s: float
    max_wait_s: float
    _first: float | None = None
    _last: float = 0.0
    _paths: dict[str, None] = field(default_factory=dict)
    _events: int = 0

    def add(self, path: str, now: float) -> None:
        if self._first is None:
            self._first = now
        self._last = now
        self._paths.setdefault(path, None)
        self._events += 1

    def deadline(self) -> float | None:
        """When the pending changes are due: `quiet_s` after the last, capped; None if none."""
        if self._first is None:
            return None
        return min(self._last + self.quiet_s, self._first + self.max_wait_s)

    def take(self, now: float) -> Batch | None:
        """The pending changes if they are due at `now` (and forget them), else None."""
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return None
        batch = Batch(tuple(self._paths), self._events)
        self._first, self._paths, self._events = None, {}, 0
        return batch


# ----- inotify (edge) ----------------------------------------------------------------


def own_output_files(fds: Iterable[int] = (1, 2)) -> list[str]:
    """The regular files this process writes its stdout and stderr to (Linux /proc)."""
    found = []
    for fd in fds:
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            found.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return found


class _Libc:
    """The three inotify calls, through ctypes; errors become OSError."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._init1 = libc.inotify_init1
        self._init1.argtypes = [ctypes.c_int]
        self._add = libc.inotify_add_watch
        self._add.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        self._rm = libc.inotify_rm_watch
        self._rm.argtypes = [ctypes.c_int, ctypes.c_int]

    @staticmethod
    def _check(result: int, path: str | None = None) -> int:
        if result < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return result

    def init(self) -> int:
        return self._check(self._init1(IN_NONBLOCK | IN_CLOEXEC))

    def add_watch(self, fd: int, path: str, mask: int) -> int:
        return self._check(self._add(fd, os.fsencode(path), mask), path)

    def rm_watch(self, fd: int, wd: int) -> None:
        self._rm(fd, wd)  # EINVAL when the kernel already dropped it: nothing to do


@dataclass(frozen=True, slots=True)
class _Root:
    path: str
    is_dir: bool


@dataclass(slots=True)
class WatchStats:
    """What `TreeWatcher.start` set up, for the `watch_started` event."""

    dirs: int = 0
    missing: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class TreeWatcher:
    """Watches `roots` (directories recursively, files through their parent directory).

    `on_change(paths)` is called on the loop with the absolute paths that changed and
    are not ignored; ignore globs see paths relative to the root and to `base` (the
    app's cwd).
    """

    def __init__(
        self,
        roots: Sequence[str],
        rules: IgnoreRules,
        on_change: Callable[[list[str]], None],
        loop: asyncio.AbstractEventLoop,
        *,
        base: str | None = None,
        exclude: Iterable[str] = (),
    ) -> None:
        self.rules = rules
        self._exclude = frozenset(os.path.realpath(p) for p in exclude)
        self.base = os.path.abspath(base) if base else None
        self._roots_in = [os.path.abspath(r) for r in roots]
        self._roots: list[_Root] = []
        self._on_change = on_change
        self._loop = loop
        self._libc = _Libc()
        self._fd = -1
        self._dirs: dict[int, str] = {}  # wd -> directory path
        self._real: dict[int, str] = {}  # wd -> the directory's real path (for `exclude`)
        self._wds: dict[str, int] = {}
        self.stats = WatchStats()

    # ----- setup -------------------------------------------------------------------

    def start(self) -> WatchStats:
        """Open inotify, add every watch, start reading; raises OSError if inotify is unusable."""
        self._fd = self._libc.init()
        for path in self._roots_in:
            if os.path.isdir(path):
                self._roots.append(_Root(path, True))
                self._add_tree(path)
            else:
                if not os.path.exists(path):
                    self.stats.missing.append(path)
                self._roots.append(_Root(path, False))
                parent = os.path.dirname(path)
                if os.path.isdir(parent):
                    self._add_dir(parent)
        self._loop.add_reader(self._fd, self._on_readable)
        return self.stats

    def close(self) -> None:
        """Stop reading and close the fd (the kernel drops every watch with it)."""
        if self._fd >= 0:
            self._loop.remove_reader(self._fd)
            os.close(self._fd)
            self._fd = -1
        self._dirs.clear()
        self._wds.clear()
        self._real.clear()

    def _add_dir(self, path: str) -> bool:
        if path in self._wds:
            return True
        try:
            wd = self._libc.add_watch(self._fd, path, DIR_MASK)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) and len(self.stats.errors) < 10:
                hint = " (raise fs.inotify.max_user_watches)" if exc.errno == errno.ENOSPC else ""
                self.stats.errors.append(f"{path}: {exc.strerror}{hint}")
            return False
        self._dirs[wd] = path
        self._wds[path] = wd
        if self._exclude:
            self._real[wd] = os.path.realpath(path)
        self.stats.dirs = len(self._dirs)
        return True

    def _add_tree(self, top: str) -> None:
        """Watch `top` and every directory under it that is not ignored (symlinks not followed)."""
        stack = [top]
        while stack:
            path = stack.pop()
            if not self._add_dir(path):
                continue
            try:
                with os.scandir(path) as entries:
                    for entry in entries:
                        if entry.is_dir(follow_symlinks=False) and not self.is_ignored(entry.path):
                            stack.append(entry.path)
            except OSError:
                continue

    # ----- events ------------------------------------------------------------------

    def _root_of(self, path: str) -> _Root | None:
        for root in self._roots:
            if path == root.path or (root.is_dir and path.startswith(root.path + "/")):
                return root
        return None

    def is_ignored(self, path: str) -> bool:
        """True for a path outside every root, or one the rules ignore."""
        root = self._root_of(path)
        if root is None:
            return True
        if root.is_dir and self.rules.ignored(os.path.relpath(path, root.path)):
            return True
        if self.base is not None and path.startswith(self.base + "/"):
            return self.rules.ignored(os.path.relpath(path, self.base))
        return not root.is_dir and self.rules.ignored(os.path.basename(path))

    def _on_readable(self) -> None:
        changed: dict[str, None] = {}
        while True:
            try:
                data = os.read(self._fd, READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            self._parse(data, changed)
        if changed:
            self._on_change(list(changed))

    def _parse(self, data: bytes, changed: dict[str, None]) -> None:
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
            raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                changed[OVERFLOW] = None
                continue
            directory = self._dirs.get(wd)
            if directory is None:
                continue
            if mask & IN_IGNORED:
                del self._dirs[wd]
                self._real.pop(wd, None)
                if self._wds.get(directory) == wd:  # not a new directory of the same name
                    del self._wds[directory]
                continue
            name = os.fsdecode(raw.split(b"\0", 1)[0])
            if self._exclude and os.path.join(self._real.get(wd, ""), name) in self._exclude:
                continue
            path = os.path.join(directory, name) if name else directory
            if self.is_ignored(path):
                continue
            changed[path] = None
            if mask & IN_ISDIR:
                self._dir_event(path, mask)

    def _dir_event(self, path: str, mask: int) -> None:
        """Follow directories: watch one that appears, forget one that moves away."""
        if mask & IN_MOVED_FROM:
            for gone in [d for d in self._wds if d == path or d.startswith(path + "/")]:
                self._libc.rm_watch(self._fd, self._wds.pop(gone))
            return
        if not mask & (IN_CREATE | IN_MOVED_TO):
            return
        root = self._root_of(path)
        if root is not None and root.path == path and not root.is_dir:
            self._roots[self._roots.index(root)] = root = _Root(path, True)
        if root is not None and root.is_dir:
            self._add_tree(path)
