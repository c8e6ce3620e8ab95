"""``POST /v1/tips/{tracking_no}/feedback``: the citizen rates the handling of their tip (回访).

The access code proves the citizen as it does for the status; tips.py records the rating and
its event. Dispatch reopens the case on a dissatisfied rating; intake only reports it
(services/intake/feedback.py holds the rules).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from contracts.events import Rating
from services.intake import tips
from services.intake.edges import ProblemRoute, client_address
from services.intake.feedback import RATING_TEXT, reopens
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["tips"], route_class=ProblemRoute)


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(max_length=16, description="the tip's access code")]
    rating: Rating
    comment: str | None = Field(default=None, min_length=1, max_length=1000)


class FeedbackTaken(BaseModel):
    tracking_no: str
    rating: Rating
    rating_text: str
    comment: str | None
    rated_at: datetime
    resolution_round: int = Field(description="which resolution of the case this rates")
    reopening: bool = Field(description="the case is to be handled again")
    message: str


@router.post(
    "/tips/{tracking_no}/feedback",
    status_code=201,
    response_model=FeedbackTaken,
    responses={
        404: {"description": "unknown tracking number or wrong access code (the same answer)"},
        409: {"description": "not resolved yet, already closed, or already rated"},
    },
)
async def rate(
    tracking_no: str, body: FeedbackIn, runtime: RuntimeDep, request: Request
) -> FeedbackTaken:
    proven = await tips.verified(runtime, client_address(request), tracking_no, body.code)
    rated = await tips.rate(runtime, proven.id, body.rating, body.comment)
    reopening = reopens(body.rating)
    return FeedbackTaken(
        tracking_no=tracking_no,
        rating=body.rating,
        rating_text=RATING_TEXT[body.rating],
        comment=body.comment,
        rated_at=rated.rated_at,
        resolution_round=rated.resolution_round,
        reopening=reopening,
        message="感谢您的评价。"
        + ("您对办理结果不满意，案件将重新办理，请留意进度。" if reopening else ""),
    )
