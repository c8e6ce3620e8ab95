"""Erasing a tip's personal data, and telling the other services: intake owns the tip, so its
erasure starts here and travels as ``whistle.personal_data.erased`` through the outbox, in the
transaction that erases — dispatch then erases its copies, the ledger destroys the tip's key.

Two ways in: the retention job, ``WHISTLE_TIP_RETENTION_DAYS`` after the case last closed
(services/intake/retention.py), and a request (``whistle erase TRACKING_NO`` or ``POST
/v1/admin/tips/{tracking_no}/erasure``), at any time. What is erased: the words (replaced by
已按规定删除), address, point, attachments, resolution note, contact, rating comments and the
WeChat messages' place and photo references, the submission's digest (kept to tell a retry
from a reused idempotency key), and the personal fields of the tip's events still in intake's
outbox. The tip's number, channel, grid, matter and dates stay: they are the
county's record, not the person's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import EVENT_TYPES, PersonalDataErased
from contracts.topics import TIPS
from services.intake import SOURCE
from services.intake.errors import AlreadyErased, UnknownTip
from services.intake.models import Tip, TipFeedback, WeChatMessage
from services.runtime.outbox import OutboxMessage, stage
from services.runtime.retention import ERASED_TEXT
from services.runtime.service import Runtime

RETENTION_BASIS = (
    "《中华人民共和国个人信息保护法》第四十七条第一款第（二）项：保存期限已届满"
    "（案件办结后 {days} 天）"
)
REQUEST_BASIS = "《中华人民共和国个人信息保护法》第四十七条：个人请求删除其个人信息"

CONTACT_FIELDS = {"contact_sealed": None, "masked_phone": None, "phone_hash": None}
"""The contact as intake keeps it; the retention job forgets it earlier than the rest."""


@dataclass(frozen=True)
class Erasure:
    """Why and by whom: what the ``whistle.personal_data.erased`` event records."""

    reason: Literal["retention", "request"]
    legal_basis: str
    erased_by: str


async def erase(
    session: AsyncSession, tips: Sequence[tuple[UUID, str]], erasure: Erasure, now: datetime
) -> None:
    """Erase the personal data of ``tips`` (id, tracking number) and stage each one's
    erasure event; the caller commits."""
    ids = [tip_id for tip_id, _ in tips]
    if not ids:
        return
    erased = await session.execute(
        update(Tip)
        .where(Tip.id.in_(ids))  # type: ignore[union-attr]
        .values(
            text=ERASED_TEXT,
            address=None,
            lat=None,
            lon=None,
            attachments=[],
            resolution_note=None,
            # A plain digest of the words and number: enough to confirm a guess of them.
            request_digest=None,
            erased_at=now,
            **CONTACT_FIELDS,
        )
        .returning(Tip.id, Tip.county)  # type: ignore[arg-type]
    )
    county_of: dict[UUID, str] = {tip_id: county for tip_id, county in erased.all()}
    await session.execute(
        update(TipFeedback).where(TipFeedback.tip_id.in_(ids)).values(comment=None)  # type: ignore[attr-defined]
    )
    await session.execute(
        update(WeChatMessage)
        .where(WeChatMessage.tip_id.in_(ids))  # type: ignore[union-attr]
        .values(media_id=None, pic_url=None, lat=None, lon=None, label=None)
    )
    await _scrub_outbox(session, ids)
    for tip_id, tracking_no in tips:
        payload = PersonalDataErased(
            tip_id=tip_id,
            tracking_no=tracking_no,
            reason=erasure.reason,
            legal_basis=erasure.legal_basis,
            erased_at=now,
            erased_by=erasure.erased_by,
        )
        stage(session, TIPS, new_event(SOURCE, str(tip_id), payload, now, county_of.get(tip_id)))


def scrubbed(event_type: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with its personal fields (as the contracts declare them) erased: a required
    one says 已按规定删除, an optional one becomes null — still a valid payload."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        return dict(data)
    erased = dict(data)
    for name in model.personal_fields():
        if erased.get(name) is not None:
            erased[name] = ERASED_TEXT if model.model_fields[name].is_required() else None
    return erased


async def _scrub_outbox(session: AsyncSession, ids: Sequence[UUID]) -> None:
    """The tips' events still in the outbox (kept 30 days after sending, to heal a broker's
    loss) keep no personal data either: sent again, they carry it erased."""
    rows = await session.scalars(
        select(OutboxMessage).where(
            OutboxMessage.topic == TIPS,  # type: ignore[arg-type]
            OutboxMessage.key.in_([str(tip_id) for tip_id in ids]),  # type: ignore[attr-defined]
        )
    )
    for row in rows:
        data = row.event.get("data") or {}
        erased = scrubbed(str(row.event.get("type")), data)
        if erased != data:
            row.event = {**row.event, "data": erased}


async def erase_on_request(
    session: AsyncSession, tracking_no: str, erasure: Erasure, now: datetime
) -> UUID:
    """Erase one tip by its tracking number, whatever its case's state; the tip's id.
    UnknownTip for an unknown number, AlreadyErased for a tip erased before."""
    tip = (
        await session.execute(
            select(Tip.id, Tip.erased_at)
            .where(Tip.tracking_no == tracking_no)  # type: ignore[arg-type]
            .with_for_update()
        )
    ).one_or_none()
    if tip is None:
        raise UnknownTip()
    if tip.erased_at is not None:
        raise AlreadyErased(tip.erased_at)
    await erase(session, [(tip.id, tracking_no)], erasure, now)
    return UUID(str(tip.id))


async def request_erasure(
    runtime: Runtime, tracking_no: str, erasure: Erasure
) -> tuple[UUID, datetime]:
    """:func:`erase_on_request` in a transaction of its own, on intake's clock; the tip's id
    and when it was erased."""
    now = runtime.clock()
    async with runtime.transaction() as session:
        return await erase_on_request(session, tracking_no, erasure, now), now
