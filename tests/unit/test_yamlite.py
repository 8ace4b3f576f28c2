"""runtime.yamlite against PyYAML: every answer it gives is PyYAML's SafeLoader answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.yamlite import UNSURE, load

ROOT = Path(__file__).resolve().parents[2]


def pyyaml(text: str) -> object:
    """PyYAML's value, or the exception class when it refuses the text."""
    try:
        return yaml.safe_load(text)
    except Exception as exc:
        return type(exc)


def same(a: object, b: object) -> bool:
    """Equal values of equal types all the way down (True is not 1 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check(text: str) -> object:
    """The property: yamlite is UNSURE or agrees with PyYAML exactly."""
    fast = load(text)
    if fast is not UNSURE:
        slow = pyyaml(text)
        assert same(fast, slow), f"{text!r}: yamlite {fast!r}, PyYAML {slow!r}"
    return fast


TYPICAL = """\
# an ecosystem as the README writes it
apps:
  - name: web                 # the HTTP app
    script: app.py
    exec_mode: cluster
    instances: ${WEB_CONCURRENCY:-max}
    listen: ["${HOST:-}:${PORT:-3000}"]
    max_memory_restart: 200M
    kill_timeout: 5s
    wait_ready: yes
    args: [--port, "8000", -v]
    env:
      NODE_ENV: production
      QUOTED: 'it''s'
      EMPTY:
    env_production:
      LEVEL: "warn"
  - name: worker
    script: worker.py --queue default
    instances: 2
    watch: false
    ignore_watch: []
    stop_exit_codes:
    - 0
    - 3
"""


def test_typical_ecosystem_is_read_without_pyyaml() -> None:
    """The README's shape: every feature it uses is in the subset, and the value is PyYAML's."""
    assert check(TYPICAL) is not UNSURE


@pytest.mark.parametrize(
    "path",
    sorted(ROOT.glob("examples/**/ecosystem*.yml")),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_shipped_examples_are_read_without_pyyaml(path: Path) -> None:
    """The example app's ecosystem files take the fast path."""
    assert check(path.read_text()) is not UNSURE


@pytest.mark.parametrize(
    "text",
    [
        "a: 1.10",  # a float in YAML 1.1
        "a: 012",  # octal
        "a: 1_000",
        "a: 1:30",  # sexagesimal
        "a: 2026-01-01",  # a date
        "a: 0x1F",
        "a: .inf",
        "a: &x 1",
        "a: *x",
        "a: !!str 1",
        "a: |\n  text",
        "a: >\n  text",
        'a: "esc\\"aped"',
        "a: {b: 1}",
        "a: [[1]]",
        "a: b: c",
        "a: x\n  continued",
        "a: 1\na: 2",  # duplicate keys
        "---\na: 1",
        "a:\tb",
        "? a\n: b",
        "<<: {}",
        "just a scalar",
    ],
)
def test_outside_the_subset_is_unsure(text: str) -> None:
    """Whatever a resolver, an indicator or a layout could make differently goes to PyYAML."""
    assert load(text) is UNSURE


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("a:", {"a": None}),
        ("a: ~\nb: null\nc: NULL", {"a": None, "b": None, "c": None}),
        ("a: yes\nb: Off\nc: TRUE\nd: y", {"a": True, "b": False, "c": True, "d": "y"}),
        ("a: 0\nb: -12\nc: 200M\nd: 5s", {"a": 0, "b": -12, "c": "200M", "d": "5s"}),
        ("a: x#y\nb: x # comment", {"a": "x#y", "b": "x"}),
        ("a: ''\nb: \"\"", {"a": "", "b": ""}),
        ("a: []\nb: {}", {"a": [], "b": {}}),
        ("- a\n- b: 1\n  c: 2", ["a", {"b": 1, "c": 2}]),
        ("a:\n- 1\n- x\nb: 2", {"a": [1, "x"], "b": 2}),
        ("8000: port", {8000: "port"}),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_values_in_the_subset(text: str, expected: object) -> None:
    """Nulls, booleans, integers, strings and collections come out as PyYAML gives them."""
    assert same(check(text), expected)


KEYS = st.sampled_from(
    ["name", "script", "env", "A_B", "yes", "on", "null", "8000", "a b", "x-y", "-k", "a:b"]
)
SCALARS = st.sampled_from(
    [
        "app.py", "200M", "5s", "yes", "No", "ON", "y", "~", "null", "", "0", "7", "012",
        "-3", "+3", "1.5", ".5", "1e3", "1_000", "1:30", "2026-01-01", "2026-01-01 10:00:00",
        "0x1F", ".inf", "-.inf", ".NaN", "=", "<<", ":$PORT", "${A:-max}", "a b", "a: b",
        "x #y", "x#y", "-x", "--port", "- x", "'q'", '"q"', "'it''s'", "''", '""', '"a\\"b"',
        "[a, b]", "[]", "[ ]", "{}", "{a: 1}", "[a, [b]]", "[a,]", "[-1, 'x y', \"z\"]",
        "&a x", "*a", "!t x", "|", ">", "é ü", "@x", "`x`", "%x", "?x", "a,b", "#c",
        "true # yes", "'x' # c", "'x'#c", "[a] # c", "{} # c", "a  b", "a:", "x:y",
    ]
)  # fmt: skip


# Scalars the subset reads: documents made only of these test the layouts themselves.
PLAIN_SCALARS = st.sampled_from(
    ["app.py", "200M", "yes", "off", "~", "", "0", "-3", "${A:-max}", "a b", "x#y", "--port",
     "'it''s'", '"q"', "[a, 'b c', -1]", "[]", "{}", "é ü", "x # c", "'x' # c"]
)  # fmt: skip


@st.composite
def documents(
    draw: st.DrawFn, depth: int = 0, indent: int = 0, scalars: st.SearchStrategy[str] = SCALARS
) -> list[str]:
    """The lines of a random block mapping in the shapes ecosystem files use."""
    pad = " " * indent
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        key = draw(KEYS)
        kind = draw(st.sampled_from(["scalar", "scalar", "map", "seq", "compact"]))
        if kind == "scalar" or depth >= 2:
            lines.append(f"{pad}{key}: {draw(scalars)}".rstrip(" "))
        elif kind == "map":
            lines.append(f"{pad}{key}:")
            lines += draw(documents(depth + 1, indent + draw(st.sampled_from([2, 4])), scalars))
        else:
            lines.append(f"{pad}{key}:")
            inner = indent if kind == "compact" else indent + 2
            for _ in range(draw(st.integers(1, 3))):
                if draw(st.booleans()):
                    lines.append(f"{' ' * inner}- {draw(scalars)}".rstrip(" "))
                else:
                    item = draw(documents(depth + 1, inner + 2, scalars))
                    lines.append(f"{' ' * inner}- {item[0].lstrip(' ')}")
                    lines += item[1:]
        if draw(st.integers(0, 5)) == 0:
            lines.append(f"{pad}# a comment")
    return lines


@settings(max_examples=600, deadline=None)
@given(documents())
def test_generated_documents_agree_with_pyyaml(lines: list[str]) -> None:
    """Documents built from ecosystem shapes and tricky scalars: never a different answer."""
    check("\n".join(lines) + "\n")


@settings(max_examples=300, deadline=None)
@given(documents(scalars=PLAIN_SCALARS))
def test_layouts_of_readable_scalars_agree_with_pyyaml(lines: list[str]) -> None:
    """Only readable scalars (keys may still be odd): the nesting and layout rules."""
    check("\n".join(lines) + "\n")


MUTATIONS = st.sampled_from(
    [" ", "  ", "-", ":", "#", "'", '"', "[", "]", ",", "\n", "\t", "x", "1"]
)


@settings(max_examples=600, deadline=None)
@given(
    documents(),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), MUTATIONS), max_size=3),
)
def test_mutated_documents_agree_with_pyyaml(
    lines: list[str], edits: list[tuple[int, int, str]]
) -> None:
    """Broken and odd documents: UNSURE or PyYAML's answer, never a value PyYAML refuses."""
    text = "\n".join(lines) + "\n"
    for at, delete, insert in edits:
        at %= len(text) + 1
        text = text[:at] + insert + text[at + delete :]
    check(text)
