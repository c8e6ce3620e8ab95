"""The web channel, the citizen page's API: submit a tip, follow it with its tracking number.

The access code travels in the ``Access-Code`` header, never in the URL, where proxies, access
logs and browser history would keep it. A status request that puts ``code`` in its query
string is refused (400) without the code being looked at, so no client keeps doing it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import GeoPoint, Sha256
from services.intake import channels, tips
from services.intake.channels import Located, NewTip, TipAccepted, TipText
from services.intake.contact import PHONE
from services.intake.edges import IdempotencyKey, ProblemRoute, answer, client_address
from services.intake.feedback import RATING_TEXT
from services.intake.tips import JOINED_CASE_NOTE, STATUS_TEXT
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["tips"], route_class=ProblemRoute)


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=50)
    phone: str = Field(pattern=PHONE.pattern)


class TipIn(Located):
    text: TipText
    contact: ContactIn | None = None
    category_hint: str | None = Field(default=None, max_length=64)
    anonymous: bool = False
    attachments: list[Sha256] = Field(
        default_factory=list, max_length=10, description="ids from POST /v1/attachments"
    )


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
    address: str | None = Field(
        description="the address as the citizen gave it; only they see it, with the access code"
    )
    location: GeoPoint | None = Field(
        description="the exact point the citizen gave (the public Open311 feed coarsens it)"
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
    address = client_address(request)
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
        # Scoped to the client's address, as grid keys are to the worker: two citizens sending
        # the same key never reach each other's tip.
        dedupe_key=f"{address}:{idempotency_key}" if idempotency_key else None,
        client_key=idempotency_key,
    )
    await channels.within_tip_limits(runtime, new, address)
    return answer(await channels.receive(runtime, new), response)


AccessCode = Annotated[
    str | None,
    Header(alias="Access-Code", max_length=16, description="the tip's access code (查询码)"),
]


@router.get(
    "/tips/{tracking_no}",
    response_model=TipStatus,
    responses={
        400: {"description": "the access code was sent in the URL (?code=): refused, unread"},
        404: {"description": "unknown tracking number or wrong access code (the same answer)"},
        429: {"description": "too many wrong access codes from this address or for this number"},
    },
)
async def tip_status(
    tracking_no: str,
    runtime: RuntimeDep,
    request: Request,
    response: Response,
    access_code: AccessCode = None,
) -> TipStatus:
    if "code" in request.query_params:
        raise Problem(
            400,
            "Access code in the URL",
            "查询码不能放在网址中，请在 Access-Code 请求头中发送。",
            type_="https://whistle.example/problems/access-code-in-url",
        )
    if not access_code:
        raise Problem(400, "Bad Request", "请填写查询码（Access-Code 请求头）。")
    tip = await tips.verified(runtime, client_address(request), tracking_no, access_code)
    # Where the tip stands is the citizen's alone: no cache keeps it.
    response.headers["cache-control"] = "no-store"
    shown = await tips.standing(runtime, tip)
    rated = shown.rated
    return TipStatus(
        tracking_no=tip.tracking_no,
        status=tip.status,
        status_text=shown.status_text,
        received_at=tip.received_at,
        case_id=tip.case_id,
        joined_case=tip.joined_case,
        joined_case_note=JOINED_CASE_NOTE if tip.joined_case else None,
        may_rate=shown.may_rate,
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
            for e in shown.timeline
        ],
        address=tip.address,
        location=GeoPoint(lat=tip.lat, lon=tip.lon)
        if tip.lat is not None and tip.lon is not None
        else None,
    )
