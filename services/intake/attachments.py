"""Citizens' photos, recordings and videos: typed by their bytes, stored once by SHA-256.

Receiving and storing the bytes is the shared upload helper's (services/runtime/uploads.py:
sniffed type, size limit, atomic rename onto the content address); here is intake's record of
each file, which a tip then cites by its SHA-256.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.models import Attachment
from services.runtime.uploads import StoredFile


async def record(
    session: AsyncSession, stored: StoredFile, now: datetime
) -> tuple[Attachment, bool]:
    """The attachment's row, and whether this upload created it (False: the same bytes were
    stored before, and the first row stands)."""
    created = await session.scalar(
        insert(Attachment)
        .values(
            sha256=stored.sha256,
            content_type=stored.content_type,
            size=stored.size,
            stored_at=now,
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Attachment.sha256)  # type: ignore[arg-type]
    )
    row = await session.get(Attachment, stored.sha256)
    assert row is not None
    return row, created is not None


async def unknown(session: AsyncSession, ids: Sequence[str]) -> list[str]:
    """The ids among ``ids`` that name no stored attachment, in the order given."""
    if not ids:
        return []
    known = set(
        await session.scalars(
            select(Attachment.sha256).where(Attachment.sha256.in_(ids))  # type: ignore[attr-defined]
        )
    )
    return [i for i in ids if i not in known]
