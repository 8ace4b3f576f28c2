"""The terminal screenshot helper: SGR colours to HTML, and a real tmux pane to a PNG."""

from __future__ import annotations

import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.terminal_shot import (
    HAVE_CHROMIUM,
    PALETTE,
    Style,
    ansi_to_html,
    apply_sgr,
    capture,
    color256,
)


def test_sgr_codes_become_styles() -> None:
    """Basic, bright, 256-colour and RGB codes, attributes and resets are all understood."""
    style = apply_sgr(Style(), "1;32")
    assert style == Style(fg=PALETTE[2], bold=True)
    assert apply_sgr(style, "22;39") == Style()
    assert apply_sgr(Style(), "38;5;196;48;2;1;2;3") == Style(fg="#ff0000", bg="#010203")
    assert apply_sgr(Style(), "38:5:21") == Style(fg=color256(21))
    assert apply_sgr(Style(), "94;101") == Style(fg=PALETTE[12], bg=PALETTE[9])
    assert apply_sgr(Style(fg="#123456", reverse=True), "") == Style()
    assert color256(232) == "#080808"
    assert color256(16 + 36 * 5) == "#ff0000"


def test_ansi_to_html_keeps_text_colours_and_size() -> None:
    """Each run is a span in its colours, reverse swaps them, text is escaped, short lines are padded."""
    page = ansi_to_html("\x1b[32mok\x1b[0m <b>\n\x1b[7mrev\x1b[27m", 10, 3)
    body = page.split('<pre id="term">')[1].removesuffix("</pre>")
    lines = body.split("\n")
    assert len(lines) == 3
    assert lines[0].startswith(f'<span style="color:{PALETTE[2]}">ok</span>')
    assert "&lt;b&gt;" in lines[0]
    assert "color:#1e1e1e;background:#d4d4d4" in lines[1]  # reversed default colours
    assert lines[2] == " " * 10


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.skipif(
    not HAVE_CHROMIUM or shutil.which("tmux") is None, reason="needs chromium and tmux"
)
def test_capture_renders_a_tmux_pane(tmp_path: Path) -> None:
    """A coloured 80x24 tmux pane comes back as a PNG about 80 by 24 character cells big."""
    tmux = ("tmux", "-S", str(tmp_path / "tmux.sock"))
    command = "printf '\\033[31mred\\033[0m plain\\n'; sleep 30"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "shot", "-x", "80", "-y", "24", command],
        check=True,
        timeout=10,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pane = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", "shot"], capture_output=True, timeout=10
            )
            if b"red plain" in pane.stdout:
                break
            time.sleep(0.1)
        png = capture("shot", tmux)
        trimmed = capture("shot", tmux, trim=True)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10, check=False)
    width, height = png_size(png)
    assert 80 * 7 < width < 80 * 10 + 40  # 8.4 px a cell at 14 px, plus the padding
    assert 24 * 14 < height < 24 * 20 + 40
    assert png_size(trimmed)[0] == width
    assert png_size(trimmed)[1] < 60  # one row of text and the padding
