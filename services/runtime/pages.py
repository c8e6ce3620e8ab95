"""Serving a service's page: one HTML document, its script and its style, from the service's
``static`` directory, with no build step and nothing loaded from elsewhere.

The page is at ``path``; its script and style at ``/<name>/<name>.js`` and ``/<name>/<name>.css``,
and any script it shares with the service's other pages (``shared``) at ``/<name>/<shared>.js``.
The strict Content-Security-Policy keeps every page to its own origin: scripts and styles from
the service, requests only to the service's own API — and, for a page that names one
(``connect_to``), to another service's origin from the settings (the department page sends
referrals to dispatch).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path

from fastapi import APIRouter, Request, Response

from services.runtime.settings import Settings

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
    connect_to: Callable[[Settings], str] | None = None,
    extra_headers: Mapping[str, str] | None = None,
    shared: Sequence[str] = (),
) -> APIRouter:
    """``img_src``: where images may come from (the citizen page previews ``blob:`` photos);
    ``connect_to``: another origin the page's script may call, from the service's settings;
    ``shared``: scripts in ``static`` that several pages of the service load before their own
    (one file, served under each page's path, so the policy stays ``script-src 'self'``)."""
    headers = {
        "referrer-policy": "no-referrer",
        "x-content-type-options": "nosniff",
        "cache-control": "no-cache",
        **(extra_headers or {}),
    }

    @cache
    def asset(kind: str, stem: str = name) -> bytes:
        return (static / f"{stem}.{kind}").read_bytes()

    def policy(request: Request) -> str:
        connect = "'self'"
        if connect_to is not None:
            connect += f" {connect_to(request.app.state.runtime.settings)}"
        return (
            f"default-src 'none'; script-src 'self'; style-src 'self'; connect-src {connect}; "
            f"img-src {img_src}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )

    def serving(kind: str, stem: str = name) -> Callable[[Request], Response]:
        # A route of the request alone: an argument for the asset would be a query parameter
        # a caller could set.
        def serve(request: Request) -> Response:
            return Response(
                asset(kind, stem),
                media_type=MEDIA_TYPES[kind],
                headers={"content-security-policy": policy(request), **headers},
            )

        return serve

    router = APIRouter(tags=[f"{name} page"], include_in_schema=False)
    router.add_api_route(path, serving("html"), methods=["GET"])
    router.add_api_route(f"/{name}/{name}.js", serving("js"), methods=["GET"])
    router.add_api_route(f"/{name}/{name}.css", serving("css"), methods=["GET"])
    for stem in shared:
        router.add_api_route(f"/{name}/{stem}.js", serving("js", stem), methods=["GET"])
    return router
