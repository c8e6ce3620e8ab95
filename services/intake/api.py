"""Intake's HTTP API for citizens: submit a tip, follow it with its tracking number."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import ContactRef, GeoPoint, TipReceived
from contracts.topics import TIPS
from services.intake.contact import PHONE, ContactVault, mask_phone
from services.intake.models import Tip, TipTimelineEntry
from services.intake.tracking import (
    access_code_matches,
    hash_access_code,
    new_access_code,
    new_tracking_no,
)
from services.runtime.outbox import stage
from services.runtime.problems import Problem
from services.runtime.service import Runtime, get_runtime

router = APIRouter(prefix="/v1", tags=["tips"])
SOURCE = "whistle/intake"

STATUS_TEXT = {
    "received": "已受理",
    "triage": "待人工分拨",
    "assigned": "已派单，承办单位处理中",
}


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=50)
    phone: str = Field(pattern=PHONE.pattern)


class TipIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)
    location: GeoPoint | None = None
    address: str | None = Field(default=None, min_length=1, max_length=200)
    grid_id: str | None = Field(default=None, min_length=1, max_length=64)
    contact: ContactIn | None = None
    category_hint: str | None = Field(default=None, max_length=64)
    anonymous: bool = False

    @model_validator(mode="after")
    def _somewhere(self) -> TipIn:
        if self.location is None and self.address is None and self.grid_id is None:
            raise ValueError("give one of location, address or grid_id")
        if not self.text.strip():
            raise ValueError("text must not be blank")
        return self


class TipAccepted(BaseModel):
    tip_id: UUID
    tracking_no: str
    access_code: str
    status: str
    status_text: str


class TimelineEntry(BaseModel):
    status: str
    status_text: str
    at: datetime


class TipStatus(BaseModel):
    tracking_no: str
    status: str
    status_text: str
    received_at: datetime
    case_id: UUID | None
    timeline: list[TimelineEntry]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


@router.post("/tips", status_code=201, response_model=TipAccepted)
async def submit_tip(body: TipIn, runtime: RuntimeDep) -> TipAccepted:
    vault: ContactVault = runtime.state["vault"]
    now = runtime.clock()
    tip_id = uuid7()
    access_code = new_access_code()
    contact = body.contact if not body.anonymous else None
    async with runtime.transaction() as session:
        tracking_no = await _unused_tracking_no(session, now, runtime.settings.timezone)
        tip = Tip(
            id=tip_id,
            tracking_no=tracking_no,
            access_code_hash=hash_access_code(tip_id, access_code),
            channel="web",
            text=body.text,
            lat=body.location.lat if body.location else None,
            lon=body.location.lon if body.location else None,
            address=body.address,
            grid_id=body.grid_id,
            category_hint=body.category_hint,
            contact_sealed=vault.seal(contact.name, contact.phone) if contact else None,
            masked_phone=mask_phone(contact.phone) if contact else None,
            phone_hash=vault.phone_hash(contact.phone) if contact else None,
            anonymous=body.anonymous,
            received_at=now,
        )
        session.add(tip)
        session.add(TipTimelineEntry(tip_id=tip_id, status="received", at=now))
        payload = TipReceived(
            tip_id=tip_id,
            tracking_no=tracking_no,
            channel="web",
            text=body.text,
            location=body.location,
            address=body.address,
            grid_id=body.grid_id,
            category_hint=body.category_hint,
            contact=ContactRef(masked_phone=tip.masked_phone, phone_hash=tip.phone_hash)
            if contact
            else None,
            anonymous=body.anonymous,
            received_at=now,
        )
        stage(session, TIPS, new_event(SOURCE, str(tip_id), payload, now))
    return TipAccepted(
        tip_id=tip_id,
        tracking_no=tracking_no,
        access_code=access_code,
        status="received",
        status_text=STATUS_TEXT["received"],
    )


async def _unused_tracking_no(session: AsyncSession, now: datetime, timezone: str) -> str:
    for _ in range(10):
        candidate = new_tracking_no(now, timezone)
        taken = await session.scalar(select(Tip.id).where(Tip.tracking_no == candidate))
        if taken is None:
            return candidate
    raise Problem(503, "Service Unavailable", "No tracking number is free; try again.")


@router.get("/tips/{tracking_no}", response_model=TipStatus)
async def tip_status(
    tracking_no: str, runtime: RuntimeDep, code: Annotated[str, Query(max_length=16)]
) -> TipStatus:
    async with runtime.sessions() as session:
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
        # Same answer for an unknown number and a wrong code: a number reveals nothing alone.
        if tip is None or not access_code_matches(tip.id, code, tip.access_code_hash):
            raise Problem(404, "Not Found", "未找到该编号，或查询码不正确。")
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
        status_text=STATUS_TEXT.get(tip.status, tip.status),
        received_at=tip.received_at,
        case_id=tip.case_id,
        timeline=[
            TimelineEntry(status=e.status, status_text=STATUS_TEXT.get(e.status, e.status), at=e.at)
            for e in entries
        ],
    )
