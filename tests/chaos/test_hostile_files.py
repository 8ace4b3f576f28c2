"""Hostile ecosystem files (#13, "Prove it"): `python -m runtime check FILE` in a process of
its own, 10 s and 512 MiB at most, never traces back, never hangs, exits 0, 2 or 78, and
says at most one `runtime: ...` line (plus `warning: ...` lines) on stderr.

A seeded sweep of generated files (tests/chaos/hostile.py; RUNTIME_CHAOS_FILES sets how
many, RUNTIME_CHAOS_SEED the seed), and the smallest file of each kind a larger sweep
found wrong, kept as regressions.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos import hostile

FILES = int(os.environ.get("RUNTIME_CHAOS_FILES", "64"))
SEED = int(os.environ.get("RUNTIME_CHAOS_SEED", "13"))

# (file name, text): what a sweep found, cut down to the smallest file that showed it.
FOUND = {
    "long-command": ("Procfile", "web: " + "x" * 1_000_000 + "\n"),
    "long-args": (
        "e.json",
        '{"apps": [{"name": "a", "script": "/bin/true", "args": "' + "x" * 1_000_000 + '"}]}',
    ),
    "toml-huge-int": (
        "e.toml",
        "[[apps]]\nname = 'a'\nscript = 'sleep 1'\ninstances = 1" + "0" * 5000 + "\n",
    ),
    "toml-long-dotted-key": (
        "e.toml",
        "[[apps]]\nname = 'a'\n" + ".".join(["a"] * 10_000) + " = 1\n",
    ),
    "yaml-bad-timestamp": ("e.yml", "apps:\n  - name: !!timestamp x\n    script: sleep 1\n"),
    "yaml-bad-bool": (
        "e.yml",
        "apps:\n  - name: a\n    script: sleep 1\n    autorestart: !!bool x\n",
    ),
    "yaml-bad-int": ("e.yml", "apps:\n  - name: a\n    script: sleep 1\n    instances: !!int _\n"),
    "json5-large": (
        "e.json",
        '{"apps": [{"name": "a", "script": "sleep 1", "env": {'
        + ", ".join(f'"K{i}": "{i}"' for i in range(200_000))
        + "}, }]}",
    ),
    "toml-long-string": (
        "e.toml",
        "[[apps]]\nname = 'a'\nscript = 'sleep 1'\nx = '" + "x" * 1_000_000 + "'\n",
    ),
    "fifo-env-file": ("e.yml", "apps:\n  - name: a\n    script: sleep 1\n    env_file: fifo\n"),
}


@pytest.mark.parametrize("case", sorted(FOUND))
def test_found_file_is_checked_in_bounds(tmp_path: Path, case: str) -> None:
    """Each file a sweep once found wrong is now refused or accepted in bounds."""
    hostile.prepare(tmp_path)
    name, text = FOUND[case]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    verdict = hostile.check(path)
    assert verdict.problem is None, verdict
    assert verdict.seconds < hostile.TIME_LIMIT_S


@pytest.mark.timeout(120)
def test_generated_hostile_files_are_checked_in_bounds(tmp_path: Path) -> None:
    """FILES generated hostile files, YAML/JSON/TOML/Procfile in turn: every check ends in
    bounds with one line or none on stderr."""
    verdicts = hostile.sweep(tmp_path, FILES, SEED)
    bad = [f"{v.path.name}: {v.problem}" for v in verdicts if v.problem]
    slowest = max(v.seconds for v in verdicts)
    print(f"\nhostile files={len(verdicts)} seed={SEED} bad={len(bad)} slowest_s={slowest:.2f}")
    assert bad == []
