"""Hostile ecosystem files from a seeded generator, and one bounded `runtime check` of each.

Every file is written in one of the formats the runtime reads (YAML, JSON, TOML, Procfile)
and mixes what breaks parsers and validators: alias bombs and self-references, deep
nesting, huge and odd numbers, long strings, unhashable and unicode keys, lone
surrogates, NUL and control bytes, invalid UTF-8, special files as `env_file`. A check
runs in its own process under a time limit and an address-space limit; the verdict is
bad when it traces back, hangs, is killed, leaves an exit code outside {0, 2, 78}, or
prints anything on stderr but `warning: ...` lines and at most one `runtime: ...` line.

Run a large sweep by hand: `python -m tests.chaos.hostile --count 2000 --seed 1`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from runtime.config.keys import CANONICAL

ROOT = Path(__file__).resolve().parents[2]
TIME_LIMIT_S = 10.0
MEMORY_LIMIT_BYTES = 512 << 20
OK_CODES = frozenset({0, 2, 78})
KEYS = tuple(CANONICAL)
ODD_KEYS = (
    "",
    " ",
    "apps",
    "__proto__",
    "constructor",
    "0",
    "-1",
    "name ",
    "NAME",
    "n\u0430me",
)  # a Cyrillic a
SPECIAL_PATHS = ("/dev/zero", "/dev/urandom", "/dev/stdin", "/dev/null", "/proc/self/mem", "/")
WORDS = ("max", "-1", "0", "cluster", "fork", "reuseport", "shared", ":$PORT", "${PORT}", "5s")


# ----- values ------------------------------------------------------------------------


def odd_text(rng: random.Random) -> str:
    """A string with whatever tends to break text handling."""
    pick = rng.randrange(9)
    if pick == 0:
        return "x" * rng.choice((1000, 70_000, 1_000_000))
    if pick == 1:
        return "\ud800" + rng.choice(("", "a", "\udfff"))
    if pick == 2:
        return "\x00" + rng.choice(("a", "sleep 1", "/bin/sh"))
    if pick == 3:
        return "".join(chr(rng.choice((0x202E, 0x200B, 0xFEFF, 0x1F600, 0x0301))) for _ in range(9))
    if pick == 4:
        return "".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 40)))
    if pick == 5:
        return "${" * rng.choice((1, 50, 5000)) + "PORT" + "}" * rng.randrange(3)
    if pick == 6:
        return rng.choice(SPECIAL_PATHS)
    if pick == 7:
        return "\r\n\t\x1b[31m\x7f"
    return rng.choice(WORDS)


def odd_number(rng: random.Random) -> object:
    pick = rng.randrange(6)
    if pick == 0:
        return 10 ** rng.choice((20, 300, 4000))  # longer ones are written as text
    if pick == 1:
        return -(2 ** rng.choice((31, 63, 64, 1000)))
    if pick == 2:
        return rng.choice((1e308, -1e308, 5e-324, -0.0, 0.5, 1.5e19))
    if pick == 3:
        return float(rng.choice(("inf", "-inf", "nan")))
    if pick == 4:
        return rng.choice((True, False, None))
    return rng.randrange(-3, 70_000)


def odd_value(rng: random.Random, depth: int = 0) -> object:
    """A scalar, a list or a mapping, possibly nested."""
    pick = rng.randrange(10 if depth < 4 else 6)
    if pick < 3:
        return odd_text(rng)
    if pick < 6:
        return odd_number(rng)
    if pick < 8:
        return [odd_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {odd_key(rng): odd_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def odd_key(rng: random.Random) -> str:
    pick = rng.randrange(4)
    if pick == 0:
        return rng.choice(ODD_KEYS)
    if pick == 1:
        return odd_text(rng)[:200]
    return rng.choice(KEYS)


def odd_app(rng: random.Random, workdir: Path) -> dict[str, object]:
    """An app with a runnable script half the time, then hostile keys and values."""
    app: dict[str, object] = {}
    if rng.random() < 0.5:
        app["script"] = rng.choice(("sleep 1", str(workdir / "app.py"), "/bin/true"))
    for _ in range(rng.randrange(1, 8)):
        key = rng.choice(KEYS) if rng.random() < 0.8 else odd_key(rng)
        app[key] = odd_value(rng)
    if rng.random() < 0.2:
        app["env_file"] = rng.choice((*SPECIAL_PATHS, str(workdir / "fifo")))
    if rng.random() < 0.2:
        app["env"] = {f"K{i}": "v" * rng.randrange(100) for i in range(rng.choice((10, 5000)))}
    return app


def odd_document(rng: random.Random, workdir: Path) -> object:
    apps: list[object] = [odd_app(rng, workdir) for _ in range(rng.choice((0, 1, 2, 3, 200)))]
    shape = rng.randrange(6)
    if shape == 0:
        return apps
    if shape == 1:
        return {"apps": apps, odd_key(rng): odd_value(rng)}
    if shape == 2:
        return odd_value(rng)
    return {"apps": apps}


# ----- formats -----------------------------------------------------------------------


def nested(open_: str, close: str, depth: int, inner: str = "1") -> str:
    return open_ * depth + inner + close * depth


def yaml_bomb(rng: random.Random) -> str:
    """Aliases of aliases (billion laughs), as issue #13 found them."""
    levels, width = rng.choice(((9, 7), (12, 10), (30, 2), (4, 3)))
    lines = ['a0: &a0 ["lol"]']
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(width))
        lines.append(f"a{i}: &a{i} [{refs}]")
    lines.append(f"apps:\n  - name: bomb\n    script: sleep 1\n    args: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def yaml_text(rng: random.Random, workdir: Path) -> str:
    pick = rng.randrange(11)
    if pick == 0:
        return yaml_bomb(rng)
    if pick == 1:
        return "apps: " + nested("[", "]", rng.choice((100, 1000, 10_000, 100_000)))
    if pick == 2:
        return "apps:\n" + "".join("  " * i + "- \n" for i in range(rng.choice((50, 500, 5000))))
    if pick == 3:
        return "apps: &x\n  - name: self\n    script: sleep 1\n    env: *x\n"
    if pick == 4:
        return "base: &b {script: sleep 1, instances: 2}\napps:\n" + "".join(
            f"  - {{<<: *b, name: a{i}}}\n" for i in range(rng.choice((3, 3000)))
        )
    if pick == 5:
        tags = ("!!python/object:os.system", "!!binary", "!!timestamp", "!!set", "!!omap", "!foo")
        return f"apps:\n  - name: {rng.choice(tags)} x\n    script: sleep 1\n"
    if pick == 6:
        return "apps:\n  - name: 2001-12-14\n    script: sleep 1\n    instances: 0o777\n    ? [a, b]\n    : c\n"
    if pick == 7:
        return "apps:\n  - name: big\n    script: sleep 1\n    kill_timeout: 1" + "0" * 5000 + "\n"
    doc = odd_document(rng, workdir)
    return yaml.safe_dump(doc, allow_unicode=rng.random() < 0.5)


def json_text(rng: random.Random, workdir: Path) -> str:
    pick = rng.randrange(9)
    if pick == 0:
        return '{"apps": ' + nested("[", "]", rng.choice((1000, 100_000, 1_000_000))) + "}"
    if pick == 1:
        return '{"apps": [{"name": "n", "script": "sleep 1", "instances": 1' + "0" * 5000 + "}]}"
    if pick == 2:  # json5 leniency with hostile content: comments, trailing commas, hex
        return "{apps: [{name: 'a', script: 'sleep 1', instances: 0x" + "f" * 400 + ",},],} // x"
    if pick == 3:
        return '{"apps": [{"name": "a", "script": "sleep 1"}' + ", " * 100_000 + "]}"
    if pick == 4:
        return "/*" * 10_000 + '{"apps": []}'
    if pick == 5:
        return '{"apps": [' + ",".join('{"name": "a"}' for _ in range(20_000)) + "]}"
    doc = odd_document(rng, workdir)
    return json.dumps(doc, ensure_ascii=rng.random() < 0.5)


def toml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(str(value), repr(value))
    if isinstance(value, list):
        return "[" + ", ".join(toml_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_scalar(v)}" for k, v in value.items()) + "}"
    if value is None:
        return '""'
    return json.dumps(str(value))  # a TOML basic string with JSON's escapes


def toml_key(key: object) -> str:
    text = str(key)
    return text if text.isidentifier() else json.dumps(text)


def toml_text(rng: random.Random, workdir: Path) -> str:
    pick = rng.randrange(8)
    if pick == 0:
        return "apps = " + nested("[", "]", rng.choice((100, 1000, 100_000)))
    if pick == 1:
        return "[[apps]]\n" + ".".join(["a"] * rng.choice((100, 10_000))) + " = 1\n"
    if pick == 2:
        return "[[apps]]\nname = 'a'\nscript = 'sleep 1'\nenv = " + nested("{x = ", "}", 5000)
    if pick == 3:
        return "[[apps]]\nname = 1979-05-27T07:32:00Z\nscript = 'sleep 1'\nkill_timeout = 1e400\n"
    if pick == 4:
        return "[[apps]]\nname = 'big'\nscript = 'sleep 1'\ninstances = 1" + "0" * 5000 + "\n"
    doc = odd_document(rng, workdir)
    apps = doc.get("apps") if isinstance(doc, dict) else doc
    out = []
    for app in apps if isinstance(apps, list) else [apps]:
        out.append("[[apps]]")
        items = app.items() if isinstance(app, dict) else [("value", app)]
        out.extend(f"{toml_key(k)} = {toml_scalar(v)}" for k, v in items)
    return "\n".join(out) + "\n"


def procfile_text(rng: random.Random, workdir: Path) -> str:
    pick = rng.randrange(6)
    if pick == 0:
        return "".join(f"p{i}: sleep 1\n" for i in range(rng.choice((100, 20_000))))
    if pick == 1:
        return "web: " + "x" * rng.choice((10_000, 1_000_000)) + "\n"
    if pick == 2:
        return "\ufeffweb: sleep 1\r\n:\n: x\nweb:\n" + odd_text(rng)[:1000] + ": y\n"
    lines = []
    for _ in range(rng.randrange(1, 6)):
        name = rng.choice(("web", "worker", odd_text(rng)[:60], "", "a b", "a:b"))
        lines.append(f"{name}: {odd_text(rng)[:2000]}")
    return "\n".join(lines) + "\n"


FORMATS: dict[str, tuple[str, Callable[[random.Random, Path], str]]] = {
    "yaml": ("yml", yaml_text),
    "json": ("json", json_text),
    "toml": ("toml", toml_text),
    "procfile": ("Procfile", procfile_text),
}


def prepare(workdir: Path) -> None:
    """What generated files point at: a real app.py and a FIFO nobody writes to."""
    (workdir / "app.py").write_text("print('hi')\n")
    fifo = workdir / "fifo"
    if not fifo.exists():
        os.mkfifo(fifo)


def write_case(rng: random.Random, workdir: Path, index: int, fmt: str) -> Path:
    """One generated file; a few get invalid UTF-8 bytes or a surrogate written raw."""
    suffix, make = FORMATS[fmt]
    text = make(rng, workdir)
    name = f"case{index:05d}.{suffix}" if suffix != "Procfile" else f"case{index:05d}/Procfile"
    path = workdir / name
    path.parent.mkdir(exist_ok=True)
    data = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.05:
        cut = rng.randrange(len(data) + 1)
        data = data[:cut] + rng.choice((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80")) + data[cut:]
    path.write_bytes(data)
    return path


# ----- checking ----------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """How one `runtime check FILE` ended."""

    path: Path
    code: int | None  # None: killed at the time limit
    stderr: str
    seconds: float
    max_rss_bytes: int

    @property
    def problem(self) -> str | None:
        """Why this run is bad, or None."""
        if self.code is None:
            return f"hung (killed after {TIME_LIMIT_S:g} s)"
        if "Traceback" in self.stderr:
            return "traceback: " + self.stderr.strip().splitlines()[-1][:300]
        if self.code not in OK_CODES:
            return f"exit code {self.code}: {self.stderr.strip()[-300:]}"
        lines = self.stderr.splitlines()
        errors = [line for line in lines if line.startswith("runtime: ")]
        other = [line for line in lines if not line.startswith(("runtime: ", "warning: "))]
        if len(errors) > 1 or other:
            return f"stderr not one line: {self.stderr[:300]!r}"
        if self.code == 78 and not errors:
            return "exit 78 without a `runtime: ...` line"
        return None


def check(path: Path, python: str = sys.executable) -> Verdict:
    """`python -m runtime check PATH` with the time and memory limits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [python, "-m", "runtime", "check", str(path)]
    started = time.monotonic()
    proc = subprocess.Popen(
        ["prlimit", f"--as={MEMORY_LIMIT_BYTES}", "--", *argv],  # prlimit execs: same pid
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=path.parent,
        env=env,
    )
    timer = threading.Timer(TIME_LIMIT_S, proc.kill)
    timer.start()
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()  # until the process ends (or is killed by the timer)
    _, status, usage = os.wait4(proc.pid, 0)  # not proc.wait(): its peak RSS is wanted
    proc.returncode = os.waitstatus_to_exitcode(status)
    killed = not timer.is_alive()
    timer.cancel()
    return Verdict(
        path,
        None if killed else proc.returncode,
        err.decode(errors="replace"),
        time.monotonic() - started,
        usage.ru_maxrss * 1024,
    )


def sweep(workdir: Path, count: int, seed: int, jobs: int = 2) -> list[Verdict]:
    """`count` generated files, formats in turn, checked `jobs` at a time."""
    prepare(workdir)
    rng = random.Random(seed)
    formats = list(FORMATS)
    paths = [write_case(rng, workdir, i, formats[i % len(formats)]) for i in range(count)]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(check, paths))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/runtime-hostile"))
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    verdicts = sweep(args.dir, args.count, args.seed, args.jobs)
    bad = [v for v in verdicts if v.problem]
    for v in bad:
        print(f"{v.path}: {v.problem}")
    for v in sorted(verdicts, key=lambda v: -v.max_rss_bytes)[:5]:
        print(f"peak RSS {v.max_rss_bytes / 2**20:.0f} MiB, {v.seconds:.2f} s: {v.path}")
    slowest = max(verdicts, key=lambda v: v.seconds)
    print(
        f"{len(verdicts)} files, {len(bad)} bad; slowest {slowest.seconds:.2f} s ({slowest.path});"
        f" largest child RSS {max(v.max_rss_bytes for v in verdicts) / 2**20:.0f} MiB"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
