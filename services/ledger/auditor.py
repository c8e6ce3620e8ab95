"""The auditor page (审计核验): a case's trail, each entry verified in the browser.

One page and its script and style, served from this package and nothing from elsewhere. The
page calls the trail with the auditor's token and checks every entry itself (docs/ledger.md,
"The auditor page"); the strict Content-Security-Policy keeps it to this origin.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from fastapi import APIRouter, Response

STATIC = Path(__file__).with_name("static")

router = APIRouter(tags=["auditor page"], include_in_schema=False)

HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}


@cache
def _asset(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _serve(name: str, media_type: str) -> Response:
    return Response(_asset(name), media_type=media_type, headers=HEADERS)


@router.get("/auditor")
async def auditor_page() -> Response:
    return _serve("auditor.html", "text/html; charset=utf-8")


@router.get("/auditor/auditor.js")
async def auditor_script() -> Response:
    return _serve("auditor.js", "text/javascript; charset=utf-8")


@router.get("/auditor/auditor.css")
async def auditor_style() -> Response:
    return _serve("auditor.css", "text/css; charset=utf-8")
