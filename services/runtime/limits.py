"""How large a request body may be: checked before the body is read into memory.

Every route takes at most ``request_body_max_bytes`` (``WHISTLE_REQUEST_BODY_MAX_BYTES``,
64 KiB): a declared ``Content-Length`` over the limit is refused before any of the body is
read, and a body streamed without one (chunked) is counted as it arrives and refused once it
passes the limit. The refusal is ``413 Content Too Large`` as problem+json. A route that reads
its own body under its own limit (uploads, Open311's form, WeChat's XML) says so with
:func:`own_body_limit` and is left to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI, HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.runtime.problems import Problem, problem_response
from services.runtime.settings import Settings

OWN_LIMIT = "__whistle_own_body_limit__"

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def own_body_limit(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint as reading its body under a limit of its own."""
    setattr(endpoint, OWN_LIMIT, True)
    return endpoint


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit. An HTTPException, so that
    FastAPI's body parsing lets it through (it turns other errors into 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds {limit} bytes.")
        self.limit = limit


def too_large(limit: int) -> Problem:
    return Problem(413, "Content Too Large", f"The request body exceeds {limit} bytes.")


class BodyLimit:
    """ASGI middleware refusing bodies over ``max_bytes`` unless the route has its own limit.

    It counts what the route reads: the first read refuses a body whose declared length is
    over the limit, before any of it is taken in, and every read adds what arrived, refusing
    once the count passes the limit. The route is known by then (routing has put its endpoint
    in the scope), so a route with a limit of its own is left to it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        received = 0

        async def counted() -> Message:
            nonlocal received
            limited = not getattr(scope.get("endpoint"), OWN_LIMIT, False)
            if limited and declared is not None and declared > limit:
                raise BodyTooLarge(limit)
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if limited and received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:
            # Where a route read its body outside FastAPI's exception handling.
            if started:
                raise
            await problem_response(too_large(limit), scope.get("path"))(scope, receive, send)


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Limit every route's body to the settings' ``request_body_max_bytes``."""
    app.add_middleware(BodyLimit, max_bytes=settings.request_body_max_bytes)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None
