"""The dashboard page: one HTML document with its style and script inline (no CDN, no
request besides `events` and the buttons' `api/` POSTs), locked down by a
Content-Security-Policy built from their hashes.

The parts live beside this module as plain files (`static/dashboard.html`, `.css`,
`.js`, shipped as package data) so they can be read, linted and syntax-checked as what
they are; they are read once, when `--web` first imports this module.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _part(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


STYLE = _part("dashboard.css")
SCRIPT = _part("dashboard.js")
BODY = _part("dashboard.html")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

PAGE = (
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width, initial-scale=1">'
    '<link rel="icon" href="data:,"><title>runtime</title>'
    f"<style>{STYLE}</style></head>\n<body>\n{BODY}\n<script>{SCRIPT}</script>\n</body></html>\n"
).encode()
