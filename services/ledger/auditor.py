"""The auditor page (审计核验): a case's trail, each entry verified in the browser.

One page and its script and style, served from this package and nothing from elsewhere. The
page calls the trail with the auditor's token and checks every entry itself (docs/ledger.md,
"The auditor page"); the strict Content-Security-Policy keeps it to this origin.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.pages import page_router

router = page_router("auditor", "/auditor", Path(__file__).with_name("static"))
