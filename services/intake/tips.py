"""Accepting a tip, whatever channel it came through: one normalised tip, one event.

A channel maps its own request onto :class:`NewTip`; :func:`accept` stores the tip, its first
timeline entry and its ``TipReceived`` event in the caller's transaction. A retry of the same
submission (same channel and dedupe key: an ``Idempotency-Key``, a 12345 call id, a WeChat
``MsgId``) finds the stored tip and gets the original answer back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import Channel, ContactRef, GeoPoint, TipReceived, Urgency
from contracts.topics import TIPS
from services.intake.contact import ContactVault, mask_phone
from services.intake.models import Tip, TipTimelineEntry
from services.intake.tracking import hash_access_code, new_access_code, new_tracking_no
from services.runtime.outbox import stage

SOURCE = "whistle/intake"
TRACKING_NUMBER_ATTEMPTS = 10


@dataclass(frozen=True)
class NewTip:
    channel: Channel
    text: str
    location: GeoPoint | None = None
    address: str | None = None
    grid_id: str | None = None
    category_hint: str | None = None
    urgency_hint: Urgency | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    anonymous: bool = False
    attachments: tuple[str, ...] = field(default=())
    resolved_on_spot: bool = False
    resolution_note: str | None = None
    # What makes a retry the same submission, unique per channel.
    dedupe_key: str | None = None
    # The channel's own reference (call id, message id), kept for the record.
    external_ref: str | None = None


@dataclass(frozen=True)
class Receipt:
    tip_id: UUID
    tracking_no: str
    access_code: str
    status: str
    duplicate: bool


class NoTrackingNumber(Exception):
    """Every tracking number tried was taken: the day's number space is nearly full."""


async def find_duplicate(
    session: AsyncSession, vault: ContactVault, channel: str, dedupe_key: str | None
) -> Receipt | None:
    if dedupe_key is None:
        return None
    tip = await session.scalar(
        select(Tip).where(Tip.channel == channel, Tip.dedupe_key == dedupe_key)
    )
    if tip is None or tip.access_code_sealed is None:
        return None
    return Receipt(
        tip.id, tip.tracking_no, vault.open_access_code(tip.access_code_sealed), tip.status, True
    )


async def accept(
    session: AsyncSession, vault: ContactVault, new: NewTip, now: datetime, timezone: str
) -> Receipt:
    """Store the tip and stage its event; the caller commits. Flushes, so a concurrent
    retry with the same dedupe key fails here with an IntegrityError."""
    duplicate = await find_duplicate(session, vault, new.channel, new.dedupe_key)
    if duplicate is not None:
        return duplicate
    tip_id = uuid7()
    access_code = new_access_code()
    tracking_no = await _unused_tracking_no(session, now, timezone)
    phone = None if new.anonymous else new.contact_phone
    name = None if new.anonymous else new.contact_name
    tip = Tip(
        id=tip_id,
        tracking_no=tracking_no,
        access_code_hash=hash_access_code(tip_id, access_code),
        access_code_sealed=vault.seal_access_code(access_code),
        channel=new.channel,
        external_ref=new.external_ref,
        dedupe_key=new.dedupe_key,
        text=new.text,
        lat=new.location.lat if new.location else None,
        lon=new.location.lon if new.location else None,
        address=new.address,
        grid_id=new.grid_id,
        category_hint=new.category_hint,
        urgency_hint=new.urgency_hint,
        contact_sealed=vault.seal(name, phone) if phone or name else None,
        masked_phone=mask_phone(phone) if phone else None,
        phone_hash=vault.phone_hash(phone) if phone else None,
        anonymous=new.anonymous,
        attachments=list(new.attachments),
        resolved_on_spot=new.resolved_on_spot,
        resolution_note=new.resolution_note,
        received_at=now,
    )
    session.add(tip)
    session.add(TipTimelineEntry(tip_id=tip_id, status="received", at=now))
    await session.flush()
    payload = TipReceived(
        tip_id=tip_id,
        tracking_no=tracking_no,
        channel=new.channel,
        external_ref=new.external_ref,
        text=new.text,
        location=new.location,
        address=new.address,
        grid_id=new.grid_id,
        category_hint=new.category_hint,
        urgency_hint=new.urgency_hint,
        contact=ContactRef(masked_phone=tip.masked_phone, phone_hash=tip.phone_hash)
        if phone
        else None,
        anonymous=new.anonymous,
        attachments=list(new.attachments),
        resolved_on_spot=new.resolved_on_spot,
        resolution_note=new.resolution_note,
        received_at=now,
    )
    stage(session, TIPS, new_event(SOURCE, str(tip_id), payload, now))
    return Receipt(tip_id, tracking_no, access_code, "received", False)


async def _unused_tracking_no(session: AsyncSession, now: datetime, timezone: str) -> str:
    for _ in range(TRACKING_NUMBER_ATTEMPTS):
        candidate = new_tracking_no(now, timezone)
        taken = await session.scalar(select(Tip.id).where(Tip.tracking_no == candidate))
        if taken is None:
            return candidate
    raise NoTrackingNumber()
