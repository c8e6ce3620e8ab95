"""What intake forgets, and when (the retention job of services/runtime/retention.py runs these).

Counted from the moment a tip's case was closed (the latest 已结案 of its timeline: a case
reopened and closed again counts from its last close), never from its arrival — the citizen
must still be reachable for 回访 while the case is open:

- ``contact``: after ``WHISTLE_CONTACT_RETENTION_DAYS`` (180), the sealed name and phone, the
  masked phone and the phone's keyed hash;
- ``tip``: after ``WHISTLE_TIP_RETENTION_DAYS`` (1095), everything else of the citizen's — the
  words (replaced by 已按规定删除), address, point, attachments, the resolution note, the
  rating comments, the WeChat messages' place and photo references — and the contact if it is
  still there. The tip's number, channel, grid, matter and dates stay: they are the county's
  record, not the person's;
- ``attachment``: an uploaded file no tip cites, once it is ``WHISTLE_ATTACHMENT_ORPHAN_HOURS``
  (24) old — never cited, or cited only by tips erased since — from the table and the disk;
- ``rate_limit``: a limit's state two days after it returned to a full allowance (its keys are
  addresses and phone hashes, kept no longer than they limit anything).

Each tip erased is erased through services/intake/erasure.py, which also stages its
``whistle.personal_data.erased`` event: dispatch erases its copies and the ledger destroys the
tip's key when they consume it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

from sqlalchemy import delete, func, not_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import SOURCE, ratelimit
from services.intake import erasure as erasure_service
from services.intake.erasure import CONTACT_FIELDS, RETENTION_BASIS, Erasure
from services.intake.models import Attachment, Tip, TipTimelineEntry
from services.runtime.retention import Sweep
from services.runtime.service import Runtime
from services.runtime.uploads import content_path

CLOSED = "closed"
# A rate limit's row says nothing once its allowance is whole again; kept a little longer.
RATE_LIMIT_KEPT = timedelta(days=2)
# Tips erased per transaction: a backlog (the first run after years) goes in bounded steps.
BATCH = 500


def _closed_before(cutoff: datetime):  # type: ignore[no-untyped-def]
    """The ids of tips whose case is closed, last closed before ``cutoff``."""
    return (
        select(TipTimelineEntry.tip_id)
        .join(Tip, Tip.id == TipTimelineEntry.tip_id)  # type: ignore[arg-type]
        .where(Tip.status == CLOSED, TipTimelineEntry.status == CLOSED)  # type: ignore[arg-type]
        .group_by(TipTimelineEntry.tip_id)  # type: ignore[arg-type]
        .having(func.max(TipTimelineEntry.at) < cutoff)
    )


HAS_CONTACT = or_(
    Tip.contact_sealed.is_not(None),  # type: ignore[union-attr]
    Tip.masked_phone.is_not(None),  # type: ignore[union-attr]
    Tip.phone_hash.is_not(None),  # type: ignore[union-attr]
)


async def erase_contacts(session: AsyncSession, cutoff: datetime) -> int:
    result = await session.execute(
        update(Tip)
        .where(Tip.id.in_(_closed_before(cutoff)), HAS_CONTACT)  # type: ignore[union-attr]
        .values(**CONTACT_FIELDS)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def erase_tips(
    session: AsyncSession, cutoff: datetime, now: datetime, erasure: Erasure
) -> list[UUID]:
    """Erase up to BATCH tips' personal data, each with its erasure event; the ids erased."""
    tips = [
        (tip_id, tracking_no)
        for tip_id, tracking_no in await session.execute(
            select(Tip.id, Tip.tracking_no)
            .where(Tip.id.in_(_closed_before(cutoff)), Tip.erased_at.is_(None))  # type: ignore[union-attr]
            .limit(BATCH)
            .with_for_update(skip_locked=True)
        )
    ]
    await erasure_service.erase(session, tips, erasure, now)
    return [tip_id for tip_id, _ in tips]


async def orphaned_attachments(session: AsyncSession, stored_before: datetime) -> list[str]:
    """Uploads stored before ``stored_before`` that no tip cites, locked for removal."""
    cited = select(Tip.id).where(Tip.attachments.op("?")(Attachment.sha256))  # type: ignore[attr-defined]
    return list(
        await session.scalars(
            select(Attachment.sha256)
            .where(Attachment.stored_at < stored_before, not_(cited.exists()))  # type: ignore[arg-type]
            .with_for_update(skip_locked=True)
        )
    )


def remove_files(root: Path, digests: Sequence[str]) -> None:
    for digest in digests:
        with contextlib.suppress(FileNotFoundError):
            content_path(root, digest).unlink()


def sweeps(runtime: Runtime) -> list[Sweep]:
    settings = runtime.settings
    contact_days = timedelta(days=settings.contact_retention_days)
    tip_days = timedelta(days=settings.tip_retention_days)
    orphan_age = timedelta(hours=settings.attachment_orphan_hours)
    root = settings.attachments_path

    async def contacts(now: datetime) -> int:
        async with runtime.transaction() as session:
            return await erase_contacts(session, now - contact_days)

    by_retention = Erasure(
        "retention",
        RETENTION_BASIS.format(days=settings.tip_retention_days),
        SOURCE,
    )

    async def tips(now: datetime) -> int:
        erased = 0
        while True:
            async with runtime.transaction() as session:
                batch = await erase_tips(session, now - tip_days, now, by_retention)
            erased += len(batch)
            if len(batch) < BATCH:
                return erased

    async def attachments(now: datetime) -> int:
        async with runtime.transaction() as session:
            digests = await orphaned_attachments(session, now - orphan_age)
            if digests:
                await session.execute(
                    delete(Attachment).where(Attachment.sha256.in_(digests))  # type: ignore[attr-defined]
                )
        await asyncio.to_thread(remove_files, root, digests)
        return len(digests)

    async def rate_limits(now: datetime) -> int:
        async with runtime.transaction() as session:
            return await ratelimit.purge(session, now - RATE_LIMIT_KEPT)

    return [
        Sweep("contact", contacts),
        Sweep("tip", tips),
        Sweep("attachment", attachments),
        Sweep("rate_limit", rate_limits),
    ]
