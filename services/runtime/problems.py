"""RFC 9457 problem details for every HTTP error a service returns.

A dependency that cannot serve now — PostgreSQL down, frozen past a timeout, out of disk or
connections — is not the client's fault nor a bug: it answers 503 with ``Retry-After``
(``WHISTLE_DEPENDENCY_RETRY_AFTER_SECONDS``), never 500.
"""

from __future__ import annotations

import errno
import socket
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"
INVALID_REQUEST = "https://whistle.example/problems/invalid-request"
DEPENDENCY_UNAVAILABLE = "https://whistle.example/problems/dependency-unavailable"
# Nothing was done: the client may send the same request again.
BUSY = "系统繁忙，本次请求未能处理，请稍后重试。"

# SQLSTATEs that mean the server cannot serve now: connection exceptions (08), insufficient
# resources (53: disk full, out of memory, too many connections), shutting down or starting
# up (57P01–57P03), and an I/O error (58030).
UNAVAILABLE_SQLSTATES = ("08", "53", "57P01", "57P02", "57P03", "58030")
# A disk or quota that is full, a network that cannot reach the server.
UNAVAILABLE_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
    }
)


class Problem(Exception):
    """Raise from a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None = None,
        *,
        type_: str = "about:blank",
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_
        self.headers = headers
        self.extensions = extensions


def problem_response(problem: Problem, instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": problem.type, "title": problem.title, "status": problem.status}
    if problem.detail:
        body["detail"] = problem.detail
    if instance:
        body["instance"] = instance
    body.update(problem.extensions)
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, says a dependency cannot serve now
    (rather than that the request or the code is wrong)."""
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, TimeoutError | ConnectionError | socket.gaierror | PoolTimeout):
            return True
        if isinstance(current, OSError) and current.errno in UNAVAILABLE_ERRNOS:
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(UNAVAILABLE_SQLSTATES):
            return True
        # Only what the exception was raised from: an error met while handling another is
        # its own failure, not that other one's.
        current = current.__cause__
    return False


# SQLSTATE 22021 (character_not_in_repertoire): text PostgreSQL cannot hold, which is U+0000
# in UTF-8. JSON ("\u0000") and a query string ("%00") can carry it into any text a handler
# stores or looks up; it is the request's fault wherever it is met, and nothing was written.
UNSTORABLE_TEXT_SQLSTATE = "22021"


def is_unstorable_text(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it was raised from, is PostgreSQL refusing text it
    cannot hold."""
    current: BaseException | None = exc
    while current is not None:
        if getattr(current, "sqlstate", None) == UNSTORABLE_TEXT_SQLSTATE:
            return True
        current = current.__cause__
    return False


def unstorable_text() -> Problem:
    return Problem(
        422,
        "Invalid request",
        "The request carries a character that cannot be stored (U+0000).",
        type_=INVALID_REQUEST,
    )


def unavailable(retry_after_seconds: int) -> Problem:
    return Problem(
        503,
        "Service Unavailable",
        BUSY,
        type_=DEPENDENCY_UNAVAILABLE,
        headers={"Retry-After": str(retry_after_seconds)},
    )


def retry_after(request: Request) -> int:
    # Only a running service meets a dependency, and its lifespan put its runtime on the app.
    return int(request.app.state.runtime.settings.dependency_retry_after_seconds)


# What a database or network failure surfaces as: the driver's own errors (at connect),
# SQLAlchemy's wrapping of them (and its pool's timeout), and the socket's.
DEPENDENCY_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        title = {404: "Not Found", 405: "Method Not Allowed", 413: "Content Too Large"}.get(
            exc.status_code, "HTTP error"
        )
        detail = exc.detail if isinstance(exc.detail, str) else None
        problem = Problem(exc.status_code, title, detail, headers=getattr(exc, "headers", None))
        return problem_response(problem, request.url.path)

    async def on_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {"location": ".".join(str(p) for p in err["loc"]), "message": err["msg"]}
            for err in exc.errors()
        ]
        problem = Problem(
            422,
            "Invalid request",
            "The request does not match what this endpoint accepts.",
            type_=INVALID_REQUEST,
            errors=errors,
        )
        return problem_response(problem, request.url.path)

    async def on_dependency(request: Request, exc: Exception) -> JSONResponse:
        if is_unstorable_text(exc):
            return problem_response(unstorable_text(), request.url.path)
        if not is_unavailable(exc):
            # A bug, not an outage: on to the server error handler, as without this handler.
            raise exc
        return problem_response(unavailable(retry_after(request)), request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_invalid)
    # Keyed on these classes, not on Exception: Starlette gives an Exception handler to its
    # server error middleware, which re-raises the exception even after the handler answered.
    for error in DEPENDENCY_ERRORS:
        app.add_exception_handler(error, on_dependency)
