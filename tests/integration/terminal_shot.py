"""Screenshots of a terminal: a tmux pane's text and colours as a PNG, drawn by Chromium.

`capture(target)` reads the pane with `tmux capture-pane -e -p` (its SGR colour codes
kept), turns it into an HTML page of coloured spans (`ansi_to_html`) and has headless
Chromium render it (`render_png`). For a tmux server on its own socket, pass
`tmux=("tmux", "-S", path)`. From a shell:

    python -m tests.integration.terminal_shot TARGET OUT.png [--socket PATH] [--trim]
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

# the dashboard test's CDP driver, shared rather than copied
from tests.integration.test_dashboard_browser import CHROMIUM, Browser

HAVE_CHROMIUM = os.access(CHROMIUM, os.X_OK)
TMUX_TIMEOUT_S = 10.0
FONT_PX = 14
BACKGROUND = "#1e1e1e"
FOREGROUND = "#d4d4d4"
# xterm's 16 colours as VS Code's terminal draws them
PALETTE = (
    "#000000", "#cd3131", "#0dbc79", "#e5e510", "#2472c8", "#bc3fbc", "#11a8cd", "#e5e5e5",
    "#666666", "#f14c4c", "#23d18b", "#f5f543", "#3b8eea", "#d670d6", "#29b8db", "#ffffff",
)  # fmt: skip
CUBE = (0, 95, 135, 175, 215, 255)
SGR = re.compile(r"\x1b\[([0-9;:]*)m")
OTHER_ESCAPE = re.compile(r"\x1b(?:\[[0-9;:?]*[A-Za-ln-z]|[()][0-9A-Za-z]|[=>])")


@dataclass(frozen=True, slots=True)
class Style:
    """The SGR attributes in force at one point of a line."""

    fg: str | None = None
    bg: str | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    reverse: bool = False

    def css(self) -> str:
        fg, bg = self.fg or FOREGROUND, self.bg
        if self.reverse:
            fg, bg = bg or BACKGROUND, fg
        rules = [f"color:{fg}"]
        if bg:
            rules.append(f"background:{bg}")
        if self.bold:
            rules.append("font-weight:bold")
        if self.dim:
            rules.append("opacity:.6")
        if self.italic:
            rules.append("font-style:italic")
        if self.underline:
            rules.append("text-decoration:underline")
        return ";".join(rules)


def color256(n: int) -> str:
    """One of xterm's 256 colours as CSS."""
    if n < 16:
        return PALETTE[n]
    if n < 232:
        n -= 16
        r, g, b = CUBE[n // 36], CUBE[n // 6 % 6], CUBE[n % 6]
        return f"#{r:02x}{g:02x}{b:02x}"
    grey = 8 + 10 * (n - 232)
    return f"#{grey:02x}{grey:02x}{grey:02x}"


def _extended(codes: list[int]) -> tuple[str | None, int]:
    """A `38;5;N` / `38;2;R;G;B` colour (after the 38 or 48) and how many codes it used."""
    if codes[:1] == [5] and len(codes) >= 2:
        return color256(codes[1] % 256), 2
    if codes[:1] == [2] and len(codes) >= 4:
        r, g, b = (max(0, min(255, c)) for c in codes[1:4])
        return f"#{r:02x}{g:02x}{b:02x}", 4
    return None, len(codes)


def apply_sgr(style: Style, params: str) -> Style:
    """`style` after one `ESC [ params m`."""
    raw = params.replace(":", ";").split(";") if params else ["0"]
    codes = [int(p) if p.isdigit() else 0 for p in raw]
    i = 0
    while i < len(codes):
        c = codes[i]
        i += 1
        if c == 0:
            style = Style()
        elif c in (38, 48):
            color, used = _extended(codes[i:])
            i += used
            style = replace(style, **{"fg" if c == 38 else "bg": color})
        else:
            style = _simple(style, c)
    return style


def _simple(style: Style, c: int) -> Style:
    flags = {1: ("bold", True), 2: ("dim", True), 3: ("italic", True), 4: ("underline", True)}
    flags |= {7: ("reverse", True), 22: ("bold", False), 23: ("italic", False)}
    flags |= {24: ("underline", False), 27: ("reverse", False)}
    if c in flags:
        name, on = flags[c]
        style = replace(style, **{name: on})
        return replace(style, dim=False) if c == 22 else style
    if 30 <= c <= 37 or 90 <= c <= 97:
        return replace(style, fg=PALETTE[c - 30 if c < 90 else c - 82])
    if 40 <= c <= 47 or 100 <= c <= 107:
        return replace(style, bg=PALETTE[c - 40 if c < 100 else c - 92])
    if c == 39:
        return replace(style, fg=None)
    if c == 49:
        return replace(style, bg=None)
    return style


def spans(line: str, style: Style) -> tuple[list[tuple[str, Style]], Style]:
    """The runs of text of one line with the style each is in, and the style at its end
    (tmux carries it over to the next line)."""
    line = OTHER_ESCAPE.sub("", line)
    runs: list[tuple[str, Style]] = []
    pos = 0
    for m in SGR.finditer(line):
        if m.start() > pos:
            runs.append((line[pos : m.start()], style))
        style = apply_sgr(style, m[1])
        pos = m.end()
    if pos < len(line):
        runs.append((line[pos:], style))
    return runs, style


def ansi_to_html(text: str, width: int, height: int, title: str = "terminal") -> str:
    """A page showing `text` (lines with SGR codes) as a `width` x `height` terminal."""
    rows: list[str] = []
    style = Style()
    for line in text.split("\n")[:height]:
        parts, used = [], 0
        runs, style = spans(line, style)
        for chunk, run_style in runs:
            parts.append(f'<span style="{run_style.css()}">{html.escape(chunk)}</span>')
            used += len(chunk)
        parts.append(" " * max(0, width - used))
        rows.append("".join(parts))
    rows += [" " * width] * (height - len(rows))
    body = "\n".join(rows)
    return (
        "<!doctype html><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>"
        f"html,body{{margin:0;background:{BACKGROUND}}}"
        f"pre{{display:inline-block;margin:0;padding:14px 16px;color:{FOREGROUND};"
        f"background:{BACKGROUND};font:{FONT_PX}px/normal 'DejaVu Sans Mono',monospace;"
        "font-variant-ligatures:none}</style>"
        f'<pre id="term">{body}</pre>'
    )


def render_png(page: str, timeout_s: float = 20.0) -> bytes:
    """`page` drawn by a throw-away headless Chromium, cut to its `#term` element."""
    with tempfile.TemporaryDirectory(prefix="terminal-shot-") as profile:
        browser = Browser(Path(profile), size=(2400, 1600))
        try:
            url = "data:text/html;base64," + base64.b64encode(page.encode()).decode()
            browser.call("Page.navigate", {"url": url}, browser.session)
            deadline = time.monotonic() + timeout_s
            box = None
            while time.monotonic() < deadline:
                box = browser.evaluate(
                    "document.readyState === 'complete' && document.getElementById('term') &&"
                    " document.fonts.status === 'loaded' && JSON.stringify("
                    "document.getElementById('term').getBoundingClientRect())"
                )
                if box:
                    break
                time.sleep(0.05)
            if not box:
                raise TimeoutError("the terminal page did not load")
            rect = json.loads(box)
            clip = {k: float(rect[k]) for k in ("x", "y", "width", "height")}
            shot = browser.call(
                "Page.captureScreenshot",
                {"format": "png", "clip": {**clip, "scale": 1}, "captureBeyondViewport": True},
                session=browser.session,
            )
            return base64.b64decode(shot["data"])
        finally:
            browser.close()


def pane_size(target: str, tmux: Sequence[str] = ("tmux",)) -> tuple[int, int]:
    out = _tmux(tmux, "display-message", "-p", "-t", target, "#{pane_width} #{pane_height}")
    width, height = out.split()
    return int(width), int(height)


def capture_ansi(target: str, tmux: Sequence[str] = ("tmux",)) -> str:
    """The pane's visible text with its colours (`capture-pane -e`), trailing spaces kept."""
    return _tmux(tmux, "capture-pane", "-e", "-p", "-N", "-t", target).removesuffix("\n")


def _tmux(tmux: Sequence[str], *args: str) -> str:
    done = subprocess.run([*tmux, *args], capture_output=True, check=True, timeout=TMUX_TIMEOUT_S)
    return done.stdout.decode(errors="replace")


def capture(
    target: str, tmux: Sequence[str] = ("tmux",), title: str = "terminal", trim: bool = False
) -> bytes:
    """The tmux pane `target` (`session`, `session:window.pane`) as PNG bytes; with `trim`,
    without the blank rows under the last line of text (a `list` in a tall pane)."""
    width, height = pane_size(target, tmux)
    text = capture_ansi(target, tmux)
    if trim:
        lines = text.split("\n")
        while lines and not SGR.sub("", lines[-1]).strip():
            lines.pop()
        text, height = "\n".join(lines), max(1, len(lines))
    return render_png(ansi_to_html(text, width, height, title))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Save a tmux pane as a PNG.")
    parser.add_argument("target", help="tmux target pane, e.g. monit or monit:0.0")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--socket", "-S", help="the tmux server's socket (tmux -S)")
    parser.add_argument("--trim", action="store_true", help="drop the blank rows at the end")
    ns = parser.parse_args(argv)
    tmux = ("tmux", "-S", ns.socket) if ns.socket else ("tmux",)
    ns.out.write_bytes(capture(ns.target, tmux, trim=ns.trim))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
