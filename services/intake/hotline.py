"""12345 hotline operators key in the calls they take; the call id makes a retry harmless."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import Field

from contracts.events import Urgency
from services.intake import channels
from services.intake.channels import Located, NewTip, TipAccepted, TipText
from services.intake.contact import PHONE
from services.intake.edges import ProblemRoute, RuntimeDep, answer
from services.runtime.auth import Principal, require_roles

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
