"""What dispatch's routers answer with that more than one of them shows: a case as JSON (with
its version as the ETag, for If-Match) and the classifier's suggestions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import Response
from pydantic import BaseModel, Field

from services.dispatch.models import Case
from services.dispatch.queries import Suggestion


class CaseView(BaseModel):
    id: UUID
    county: str = Field(description="the county (division code) the case belongs to")
    tip_id: UUID
    status: str
    matter_code: str | None
    township_code: str | None
    village_code: str | None
    grid_id: str | None
    urgency: str
    unit_id: str | None
    staff_id: str | None
    queue: str | None
    rejections: int
    reopens: int
    resolved_at: datetime | None = Field(description="its latest resolution")
    followed_up_at: datetime | None = Field(
        description="回访 of that resolution recorded: it may close (else after the window)"
    )
    contacted_at: datetime | None = Field(description="联系群众: the unit's first contact")
    supporting_units: list[str]
    catalogue_version: str
    routing: dict[str, Any]
    acting: dict[str, Any] | None = Field(
        default=None,
        description="in whose name it is handled (acting_in_name_of), legal_basis, document_type",
    )
    inspection_task_id: UUID | None = Field(
        default=None, description="opened by a finding of this inspection task (巡查发现)"
    )
    version: int
    created_at: datetime
    updated_at: datetime


def etag(version: int) -> str:
    """The ETag of a case at ``version``: what If-Match must send back to act on it."""
    return f'"{version}"'


def case_view(case: Case, response: Response) -> CaseView:
    """The case as JSON, its version as the response's ETag."""
    response.headers["ETag"] = etag(case.version)
    return CaseView.model_validate(case, from_attributes=True)


class SuggestionOut(BaseModel):
    matter_code: str
    name: str
    score: float
    keywords: list[str] = Field(description="the tip's words that matched the item")
    unit_id: str | None = Field(description="the unit routing would assign the item to")
    unit_name: str | None


def suggestions_out(proposed: Iterable[Suggestion]) -> list[SuggestionOut]:
    return [
        SuggestionOut(
            matter_code=s.matter_code,
            name=s.name,
            score=s.score,
            keywords=list(s.keywords),
            unit_id=s.unit_id,
            unit_name=s.unit_name,
        )
        for s in proposed
    ]
