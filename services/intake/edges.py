"""What intake's HTTP edges share: the runtime, the ``Idempotency-Key`` header, the client's
address, the answer to an accepted tip, and domain errors answered as problem documents.

A router built with ``route_class=ProblemRoute`` calls the service layer without a ``try``: an
:class:`IntakeError` it lets through is answered as :func:`problem` maps it. Open311's route
class builds on this one to say the same problem in the GeoReport error format.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Annotated

from fastapi import Header, Request, Response
from fastapi.routing import APIRoute

from services.intake.channels import Receipt, TipAccepted
from services.intake.errors import (
    AccessCodeGuessesExceeded,
    AlreadyErased,
    IdempotencyKeyReused,
    IntakeError,
    NoTrackingNumber,
    RateLimited,
    RatingRefused,
    TipNotFound,
    UnknownAttachment,
    UnknownTip,
)
from services.intake.feedback import REFUSAL_TEXT
from services.runtime import proxies
from services.runtime.problems import Problem
from services.runtime.service import get_runtime

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, description="makes retries safe"),
]


def client_address(request: Request) -> str:
    """The client's address, what its rate limits and web idempotency keys are scoped to: the
    peer, or behind a trusted proxy what that proxy saw (services/runtime/proxies.py)."""
    return proxies.client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        get_runtime(request).settings.trusted_proxies,
    )


def answer(receipt: Receipt, response: Response) -> TipAccepted:
    """201 for a new tip; 200 with the original answer for a retry of one already accepted."""
    response.status_code = 200 if receipt.duplicate else 201
    return TipAccepted.of(receipt)


def problem(error: IntakeError) -> Problem:
    """The problem document that says ``error`` to a client."""
    if isinstance(error, AccessCodeGuessesExceeded):
        return Problem(
            429,
            "Too Many Requests",
            "查询码错误次数过多，请稍后再试。",
            type_="https://whistle.example/problems/access-code-guesses",
            headers={"Retry-After": str(error.retry_after_seconds)},
        )
    if isinstance(error, RateLimited):
        return Problem(
            429,
            "Too Many Requests",
            "请求过于频繁，请稍后再试。",
            headers={"Retry-After": str(error.retry_after_seconds)},
        )
    if isinstance(error, UnknownAttachment):
        return Problem(
            422,
            "Unknown attachment",
            "附件不存在，请重新上传后再提交。",
            type_="https://whistle.example/problems/unknown-attachment",
            unknown=error.ids,
        )
    if isinstance(error, IdempotencyKeyReused):
        return Problem(
            422,
            "Idempotency-Key reused",
            f"Idempotency-Key {error.key} was sent before with another request body; a retry "
            "must repeat the same request. Use a new key for a new submission.",
            type_="https://whistle.example/problems/idempotency-key-reused",
            idempotency_key=error.key,
        )
    if isinstance(error, NoTrackingNumber):
        return Problem(
            503, "Service Unavailable", "受理编号暂时无法分配，您的反映尚未受理，请稍后重试。"
        )
    if isinstance(error, TipNotFound):
        return Problem(404, "Not Found", "未找到该编号，或查询码不正确。")
    if isinstance(error, UnknownTip):
        return Problem(404, "Not Found", "未找到该受理编号。")
    if isinstance(error, AlreadyErased):
        when = error.erased_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return Problem(
            409,
            "Conflict",
            f"该线索的个人信息已于 {when} 按规定删除，无需再次删除。",
            type_="https://whistle.example/problems/already-erased",
        )
    if isinstance(error, RatingRefused):
        return Problem(
            409,
            "Conflict",
            REFUSAL_TEXT[error.refusal],
            type_=f"https://whistle.example/problems/feedback-{error.refusal.replace('_', '-')}",
        )
    # A refusal with no words for clients yet is a bug: let it be a 500.
    raise TypeError(f"no problem document for {error!r}")


class ProblemRoute(APIRoute):
    """Answers the service layer's domain errors as the problems they map to."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def handled(request: Request) -> Response:
            try:
                return await handle(request)
            except IntakeError as exc:
                raise problem(exc) from exc

        return handled
