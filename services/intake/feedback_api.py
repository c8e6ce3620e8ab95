"""``POST /v1/tips/{tracking_no}/feedback``: the citizen rates the handling of their tip (回访).

The access code proves the citizen as it does for the status; the rating, its timeline mark
and its ``whistle.tip.rated`` event commit together. Dispatch reopens the case on a
dissatisfied rating; intake only reports it (services/intake/feedback.py holds the rules).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError

from contracts.envelope import new_event
from contracts.events import Rating, TipRated
from contracts.topics import TIPS
from services.intake import database
from services.intake.edges import ProblemRoute, RuntimeDep, client_address
from services.intake.errors import RatingRefused
from services.intake.feedback import RATING_TEXT, RatingState, refusal, reopens
from services.intake.models import Tip, TipFeedback, TipTimelineEntry
from services.intake.tips import SOURCE, verified
from services.runtime.outbox import stage

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
    proven = await verified(runtime, client_address(request), tracking_no, body.code)
    now = runtime.clock()
    try:
        async with database.transaction(runtime) as session:
            # Locked: a case event or a concurrent rating waits until this one is decided.
            tip = await session.get(Tip, proven.id, with_for_update=True, populate_existing=True)
            assert tip is not None
            rated = await session.get(TipFeedback, (tip.id, tip.resolution_round))
            why = refusal(RatingState(tip.status, tip.resolution_round, rated is not None))
            if why is not None:
                raise RatingRefused(why)
            assert tip.case_id is not None  # resolved: its case is known
            session.add(
                TipFeedback(
                    tip_id=tip.id,
                    resolution_round=tip.resolution_round,
                    case_id=tip.case_id,
                    rating=body.rating,
                    comment=body.comment,
                    rated_at=now,
                )
            )
            session.add(TipTimelineEntry(tip_id=tip.id, status="rated", at=now))
            payload = TipRated(
                tip_id=tip.id,
                case_id=tip.case_id,
                rating=body.rating,
                comment=body.comment,
                channel="web",
                rated_at=now,
            )
            stage(session, TIPS, new_event(SOURCE, str(tip.id), payload, now))
            resolution_round = tip.resolution_round
    except IntegrityError as exc:
        raise RatingRefused("already_rated") from exc
    reopening = reopens(body.rating)
    return FeedbackTaken(
        tracking_no=tracking_no,
        rating=body.rating,
        rating_text=RATING_TEXT[body.rating],
        comment=body.comment,
        rated_at=now,
        resolution_round=resolution_round,
        reopening=reopening,
        message="感谢您的评价。"
        + ("您对办理结果不满意，案件将重新办理，请留意进度。" if reopening else ""),
    )
