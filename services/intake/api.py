"""Intake's HTTP API for citizens: submit a tip, follow it with its tracking number."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from contracts.events import GeoPoint, Sha256
from services.intake import attachments, database
from services.intake.contact import PHONE, ContactVault
from services.intake.feedback import RATING_TEXT, RatingState, refusal
from services.intake.models import Tip, TipFeedback, TipTimelineEntry
from services.intake.ratelimit import Decision, Limit, exceeded, hit
from services.intake.tips import NewTip, NoTrackingNumber, accept, find_duplicate
from services.intake.tracking import access_code_matches
from services.runtime.problems import Problem
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["tips"])

STATUS_TEXT = {
    "received": "已受理",
    "triage": "待人工分拨",
    "assigned": "已派单，等待承办单位接单",
    "in_progress": "承办单位处理中",
    "resolved": "已办结，等待回访",
    "closed": "已结案",
    # Timeline marks, not statuses.
    "merged": "已与其他群众反映的同一问题合并办理",
    "split": "已从合并办理中分出，单独立案办理",
    "reopened": "已重新办理",
    "rated": "已评价",
    "declined": "经县级准入审核，不属于乡镇事项清单，不予立案办理；如有疑问请拨打12345",
}
JOINED_CASE_NOTE = "您反映的问题已与其他群众反映的同一问题合并办理"
RATED_TEXT = "已办结，您已评价"


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=50)
    phone: str = Field(pattern=PHONE.pattern)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must not be blank")
    return text


TipText = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_not_blank)]
GridId = Annotated[str, Field(min_length=1, max_length=64)]


class Located(BaseModel):
    """Where the problem is: at least one of coordinates, an address or a grid."""

    model_config = ConfigDict(extra="forbid")
    location: GeoPoint | None = None
    address: str | None = Field(default=None, min_length=1, max_length=200)
    grid_id: GridId | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Located:
        if self.location is None and self.address is None and self.grid_id is None:
            raise ValueError("give one of location, address or grid_id")
        return self


class TipIn(Located):
    text: TipText
    contact: ContactIn | None = None
    category_hint: str | None = Field(default=None, max_length=64)
    anonymous: bool = False
    attachments: list[Sha256] = Field(
        default_factory=list, max_length=10, description="ids from POST /v1/attachments"
    )


class TipAccepted(BaseModel):
    tip_id: UUID
    tracking_no: str
    access_code: str
    status: str
    status_text: str


class TimelineStep(BaseModel):
    """One step on the timeline a citizen is shown: a status or a mark, in their words."""

    status: str
    status_text: str
    at: datetime


class FeedbackOut(BaseModel):
    rating: str
    rating_text: str
    comment: str | None
    rated_at: datetime


class TipStatus(BaseModel):
    tracking_no: str
    status: str
    status_text: str
    received_at: datetime
    case_id: UUID | None
    joined_case: bool = Field(description="the tip joined a case opened for the same problem")
    joined_case_note: str | None
    may_rate: bool = Field(description="POST /v1/tips/{tracking_no}/feedback is open")
    feedback: FeedbackOut | None = Field(description="the rating of the latest resolution")
    timeline: list[TimelineStep]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


HOUR, DAY = timedelta(hours=1), timedelta(days=1)


def _address(request: Request) -> str:
    # The peer address; deployments behind a proxy should have it set the real client address.
    return request.client.host if request.client else "unknown"


def _too_many(decision: Decision) -> Problem:
    return Problem(
        429,
        "Too Many Requests",
        "请求过于频繁，请稍后再试。",
        headers={"Retry-After": str(decision.retry_after_seconds)},
    )


async def _within_limits(runtime: Runtime, checks: list[tuple[Limit, str]]) -> None:
    """Count this request against each limit; 429 with Retry-After if any is exceeded."""
    now = runtime.clock()
    async with database.transaction(runtime) as session:
        decisions = [await hit(session, limit, key, now) for limit, key in checks]
    refused = [d for d in decisions if not d.allowed]
    if refused:
        raise _too_many(max(refused, key=lambda d: d.retry_after_seconds))


IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, description="makes retries safe"),
]


async def require_stored(runtime: Runtime, ids: Sequence[str]) -> None:
    """A tip may only name attachments uploaded through ``POST /v1/attachments`` (422)."""
    if not ids:
        return
    async with database.reading(runtime) as session:
        missing = await attachments.unknown(session, ids)
    if missing:
        raise Problem(
            422,
            "Unknown attachment",
            "附件不存在，请重新上传后再提交。",
            type_="https://whistle.example/problems/unknown-attachment",
            unknown=missing,
        )


async def receive(runtime: Runtime, new: NewTip, response: Response) -> TipAccepted:
    """Accept a tip in its own transaction: 201 for a new tip, 200 with the original answer
    for a retry of one already accepted."""
    vault: ContactVault = runtime.state["vault"]
    try:
        async with database.transaction(runtime) as session:
            receipt = await accept(session, vault, new, runtime.clock(), runtime.settings.timezone)
    except IntegrityError:
        # A concurrent retry with the same dedupe key committed first: answer as it did.
        async with database.reading(runtime) as session:
            found = await find_duplicate(session, vault, new.channel, new.dedupe_key)
        if found is None:
            raise
        receipt = found
    except NoTrackingNumber as exc:
        raise Problem(503, "Service Unavailable", "No tracking number is free; try again.") from exc
    response.status_code = 200 if receipt.duplicate else 201
    return TipAccepted(
        tip_id=receipt.tip_id,
        tracking_no=receipt.tracking_no,
        access_code=receipt.access_code,
        status=receipt.status,
        status_text=STATUS_TEXT.get(receipt.status, receipt.status),
    )


@router.post(
    "/tips",
    status_code=201,
    response_model=TipAccepted,
    responses={200: {"description": "a retry: the original answer"}},
)
async def submit_tip(
    body: TipIn,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TipAccepted:
    settings = runtime.settings
    checks = [
        (
            Limit("tips/address", settings.rate_limit_tips_per_address_per_hour, HOUR),
            _address(request),
        )
    ]
    if body.contact and not body.anonymous:
        vault: ContactVault = runtime.state["vault"]
        per_phone = Limit("tips/phone", settings.rate_limit_tips_per_phone_per_day, DAY)
        checks.append((per_phone, vault.phone_hash(body.contact.phone)))
    await _within_limits(runtime, checks)
    await require_stored(runtime, body.attachments)
    new = NewTip(
        channel="web",
        text=body.text,
        location=body.location,
        address=body.address,
        grid_id=body.grid_id,
        category_hint=body.category_hint,
        contact_name=body.contact.name if body.contact else None,
        contact_phone=body.contact.phone if body.contact else None,
        anonymous=body.anonymous,
        attachments=tuple(body.attachments),
        dedupe_key=idempotency_key,
    )
    return await receive(runtime, new, response)


async def verified_tip(runtime: Runtime, request: Request, tracking_no: str, code: str) -> Tip:
    """The tip the citizen proved with its access code; 404 alike for a wrong code and an
    unknown number, and wrong codes counted against the number."""
    settings = runtime.settings
    lookups = Limit("lookups/address", settings.rate_limit_lookups_per_address_per_hour, HOUR)
    await _within_limits(runtime, [(lookups, _address(request))])
    # Six-digit codes must not be guessable: a tracking number that has seen too many wrong
    # codes this hour answers nobody until the hour is over.
    wrong = Limit(
        "wrong-codes/tracking-no", settings.rate_limit_wrong_codes_per_tracking_no_per_hour, HOUR
    )
    async with database.transaction(runtime) as session:
        locked = await exceeded(session, wrong, tracking_no, runtime.clock())
        if not locked.allowed:
            raise _too_many(locked)
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
        if tip is None or not access_code_matches(tip.id, code, tip.access_code_hash):
            await hit(session, wrong, tracking_no, runtime.clock())
            found = None
        else:
            found = tip
    # Same answer for an unknown number and a wrong code: a number reveals nothing alone.
    if found is None:
        raise Problem(404, "Not Found", "未找到该编号，或查询码不正确。")
    return found


@router.get("/tips/{tracking_no}", response_model=TipStatus)
async def tip_status(
    tracking_no: str,
    runtime: RuntimeDep,
    request: Request,
    code: Annotated[str, Query(max_length=16)],
) -> TipStatus:
    tip = await verified_tip(runtime, request, tracking_no, code)
    async with database.reading(runtime) as session:
        rated = await session.get(TipFeedback, (tip.id, tip.resolution_round))
        entries = (
            await session.scalars(
                select(TipTimelineEntry)
                .where(TipTimelineEntry.tip_id == tip.id)
                .order_by(TipTimelineEntry.at, TipTimelineEntry.id)
            )
        ).all()
    return TipStatus(
        tracking_no=tip.tracking_no,
        status=tip.status,
        status_text=RATED_TEXT
        if tip.status == "resolved" and rated
        else STATUS_TEXT.get(tip.status, tip.status),
        received_at=tip.received_at,
        case_id=tip.case_id,
        joined_case=tip.joined_case,
        joined_case_note=JOINED_CASE_NOTE if tip.joined_case else None,
        may_rate=refusal(RatingState(tip.status, tip.resolution_round, rated is not None)) is None,
        feedback=FeedbackOut(
            rating=rated.rating,
            rating_text=RATING_TEXT.get(rated.rating, rated.rating),
            comment=rated.comment,
            rated_at=rated.rated_at,
        )
        if rated
        else None,
        timeline=[
            TimelineStep(status=e.status, status_text=STATUS_TEXT.get(e.status, e.status), at=e.at)
            for e in entries
        ],
    )
