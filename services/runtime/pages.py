"""Serving a service's page: one HTML document, its script and its style, from the service's
``static`` directory, with no build step and nothing loaded from elsewhere.

The page is at ``path``; its script and style at ``/<name>/<name>.js`` and ``/<name>/<name>.css``.
The strict Content-Security-Policy keeps every page to its own origin: scripts and styles from
the service, requests only to the service's own API.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Response

MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
}


def page_router(
    name: str,
    path: str,
    static: Path,
    *,
    img_src: str = "'self'",
    extra_headers: Mapping[str, str] | None = None,
) -> APIRouter:
    """``img_src``: where images may come from (the citizen page previews ``blob:`` photos)."""
    headers = {
        "content-security-policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            f"img-src {img_src}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        ),
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cache-control": "no-cache",
        **(extra_headers or {}),
    }

    @cache
    def asset(kind: str) -> bytes:
        return (static / f"{name}.{kind}").read_bytes()

    def serve(kind: str) -> Response:
        return Response(asset(kind), media_type=MEDIA_TYPES[kind], headers=headers)

    router = APIRouter(tags=[f"{name} page"], include_in_schema=False)
    router.add_api_route(path, lambda: serve("html"), methods=["GET"])
    router.add_api_route(f"/{name}/{name}.js", lambda: serve("js"), methods=["GET"])
    router.add_api_route(f"/{name}/{name}.css", lambda: serve("css"), methods=["GET"])
    return router
