"""The citizen page (群众反映) at ``/``: report a problem with a photo and a location, follow
it with the tracking number and access code, rate the result.

A page, its script and its style, served from this package with no build step; it talks only
to intake's own API (``/v1/attachments``, ``/v1/tips``), which the Content-Security-Policy
enforces. Photos are previewed from ``blob:`` URLs before they are uploaded.
"""

from __future__ import annotations

from pathlib import Path

from services.runtime.pages import page_router

router = page_router(
    "citizen",
    "/",
    Path(__file__).with_name("static"),
    img_src="'self' blob:",
    # The page asks for the location only when the citizen presses the button.
    extra_headers={"permissions-policy": "geolocation=(self), camera=(self), microphone=()"},
)
