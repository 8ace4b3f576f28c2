"""The dashboard page: its script parses, its CSP names the inline parts by hash, and it
loads nothing and runs no inline handler."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess

import pytest

from runtime.observe import dashboard


def digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_script_is_valid_javascript() -> None:
    """`node --check` accepts the page's script file."""
    path = dashboard.STATIC / "dashboard.js"
    proc = subprocess.run(
        ["node", "--check", str(path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr


def test_csp_allows_exactly_the_inline_script_and_style() -> None:
    """The CSP holds the hashes of the script and style as inlined in the page, nothing else."""
    page = dashboard.PAGE.decode()
    script = re.search(r"<script>(.*)</script>", page, re.S)
    style = re.search(r"<style>(.*)</style>", page, re.S)
    assert script is not None
    assert style is not None
    assert f"script-src {digest(script.group(1))};" in dashboard.CSP
    assert f"style-src {digest(style.group(1))};" in dashboard.CSP
    assert "unsafe" not in dashboard.CSP
    assert "default-src 'none'" in dashboard.CSP


def test_page_has_no_inline_handlers_or_external_resources() -> None:
    """No `on...=` attributes, `javascript:` URLs, `src=` or remote URLs anywhere."""
    page = dashboard.PAGE.decode()
    assert not re.search(r"\son[a-z]+\s*=", dashboard.BODY)
    assert "javascript:" not in page
    assert "src=" not in page
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
