"""The dispatcher console (调度台): one page, its script and its style, served from this
package. The page reads /v1/console/* and acts through the lifecycle endpoints with the
caller's pasted token; the strict Content-Security-Policy keeps it to this origin."""

from __future__ import annotations

from pathlib import Path

from services.runtime.pages import page_router

router = page_router("console", "/console", Path(__file__).with_name("static"))
