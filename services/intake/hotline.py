"""12345 hotline operators key in the calls they take, and the answers of the 回访 calls they
make once a case is resolved; the call id makes a retry harmless."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Urgency
from services.intake import channels, tips
from services.intake.channels import Located, NewTip, TipAccepted, TipText
from services.intake.contact import PHONE
from services.intake.edges import ProblemRoute, answer
from services.intake.feedback import ANSWER_TEXT, UNREACHABLE, FollowUpAnswer, reopens
from services.runtime.auth import Principal, require_roles
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1/hotline", tags=["hotline"], route_class=ProblemRoute)


class HotlineTicketIn(Located):
    call_id: str = Field(min_length=1, max_length=64, description="the telephony system's call id")
    caller_number: str = Field(pattern=PHONE.pattern)
    caller_name: str | None = Field(default=None, max_length=50)
    caller_wants_anonymity: bool = False
    summary: TipText
    urgency: Urgency = "general"
    category: str | None = Field(
        default=None, max_length=64, description="a matter code or Open311 service code"
    )


@router.post(
    "/tickets",
    status_code=201,
    response_model=TipAccepted,
    responses={200: {"description": "the same call id again: the original answer"}},
)
async def create_ticket(
    body: HotlineTicketIn,
    runtime: RuntimeDep,
    response: Response,
    _: Annotated[Principal, Depends(require_roles("hotline_operator"))],
) -> TipAccepted:
    new = NewTip(
        channel="hotline",
        text=body.summary,
        location=body.location,
        address=body.address,
        grid_id=body.grid_id,
        category_hint=body.category,
        urgency_hint=body.urgency,
        contact_name=body.caller_name,
        contact_phone=body.caller_number,
        anonymous=body.caller_wants_anonymity,
        dedupe_key=body.call_id,
        external_ref=body.call_id,
        client_key=body.call_id,
    )
    return answer(await channels.receive(runtime, new), response)


class FollowUpIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tracking_no: str = Field(min_length=1, max_length=32)
    call_id: str = Field(min_length=1, max_length=64, description="the telephony system's call id")
    answer: FollowUpAnswer = Field(
        description="the citizen's rating, or unreachable when the call reached nobody"
    )
    comment: str | None = Field(default=None, min_length=1, max_length=1000)


class FollowUpRecorded(BaseModel):
    tracking_no: str
    answer: FollowUpAnswer
    answer_text: str
    comment: str | None
    resolution_round: int = Field(description="which resolution of the case the call was about")
    recorded_at: datetime
    rating: bool = Field(description="a rating, counted in 满意率 (not so for unreachable)")
    reopening: bool = Field(description="the case is to be handled again")


@router.post(
    "/follow-ups",
    status_code=201,
    response_model=FollowUpRecorded,
    responses={
        200: {"description": "the same call id again: what it recorded"},
        404: {"description": "no tip with this tracking number"},
        409: {"description": "not resolved yet, closed, already rated, or no number to call"},
        422: {"description": "the call id recorded another answer or tip"},
    },
)
async def record_follow_up(
    body: FollowUpIn,
    runtime: RuntimeDep,
    response: Response,
    operator: Annotated[Principal, Depends(require_roles("hotline_operator"))],
) -> FollowUpRecorded:
    """回访 by telephone: the operator records the answer of a call to the citizen about
    their resolved case. A rating counts as one given on the citizen page does (a dissatisfied
    one reopens the case); an unreachable citizen is recorded, not rated."""
    call = await tips.follow_up_call(
        runtime,
        body.tracking_no,
        body.answer,
        body.comment,
        call_id=body.call_id,
        operator=operator.subject,
    )
    response.status_code = 200 if call.duplicate else 201
    rating = call.answer != UNREACHABLE
    return FollowUpRecorded(
        tracking_no=call.tracking_no,
        answer=call.answer,
        answer_text=ANSWER_TEXT[call.answer],
        comment=call.comment,
        resolution_round=call.resolution_round,
        recorded_at=call.recorded_at,
        rating=rating,
        reopening=rating and reopens(call.answer),  # type: ignore[arg-type]
    )
