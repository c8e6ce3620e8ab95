"""The ledger's HTTP API (a first slice: a case's trail)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import String, cast, or_, select

from services.ledger.models import CaseTip, LedgerEntry
from services.runtime.auth import Principal, require_roles
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["ledger"])


class TrailEntry(BaseModel):
    seq: int
    type: str
    source: str
    event_id: str
    subject: str | None
    topic: str
    time: datetime
    recorded_at: datetime
    leaf_hash: str
    event: dict[str, Any]


class Trail(BaseModel):
    case_id: UUID
    entries: list[TrailEntry]


@router.get("/cases/{case_id}/trail", response_model=Trail)
async def case_trail(
    case_id: UUID,
    _: Annotated[Principal, Depends(require_roles("auditor", "county_supervisor"))],
    runtime: Annotated[Runtime, Depends(get_runtime)],
) -> Trail:
    """Every event of the case and of the tips it was opened for, in the order they happened."""
    tips = select(cast(CaseTip.tip_id, String)).where(CaseTip.case_id == case_id)
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(
                select(LedgerEntry)
                .where(or_(LedgerEntry.subject == str(case_id), LedgerEntry.subject.in_(tips)))  # type: ignore[union-attr]
                .order_by(LedgerEntry.event_time, LedgerEntry.seq)  # type: ignore[arg-type]
            )
        ).all()
    return Trail(
        case_id=case_id,
        entries=[
            TrailEntry(
                seq=row.seq,
                type=row.type,
                source=row.source,
                event_id=row.event_id,
                subject=row.subject,
                topic=row.topic,
                time=row.event_time,
                recorded_at=row.recorded_at,
                leaf_hash=row.leaf_hash.hex(),
                event=json.loads(row.canonical),
            )
            for row in rows
        ],
    )
