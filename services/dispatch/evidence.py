"""The evidence stored for each case: the rows of ``case_evidence``, one per file and case.

The bytes are received and stored by the shared upload helper (services/runtime/uploads.py)
under ``WHISTLE_EVIDENCE_DIR``, by SHA-256; a row here says the file is evidence of that case,
which is what a step of the case may cite (field_record.unknown_evidence).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.dispatch.models import CaseEvidence
from services.runtime.uploads import StoredFile


async def record(
    session: AsyncSession, case_id: UUID, stored: StoredFile, by: str, now: datetime
) -> tuple[CaseEvidence, bool]:
    """The file's row as evidence of the case, and whether this upload created it (False: the
    same bytes were uploaded for the case before, and the first row stands)."""
    created = await session.scalar(
        insert(CaseEvidence)
        .values(
            case_id=case_id,
            sha256=stored.sha256,
            content_type=stored.content_type,
            size=stored.size,
            uploaded_by=by,
            uploaded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["case_id", "sha256"])
        .returning(CaseEvidence.sha256)  # type: ignore[arg-type]
    )
    row = await session.get(CaseEvidence, (case_id, stored.sha256))
    assert row is not None
    return row, created is not None


async def stored_among(session: AsyncSession, case_id: UUID, ids: Sequence[str]) -> set[str]:
    """The hashes among ``ids`` stored as evidence of the case."""
    if not ids:
        return set()
    return set(
        await session.scalars(
            select(CaseEvidence.sha256).where(
                CaseEvidence.case_id == case_id,  # type: ignore[arg-type]
                CaseEvidence.sha256.in_(ids),  # type: ignore[attr-defined]
            )
        )
    )


async def of_case(session: AsyncSession, case_id: UUID) -> list[CaseEvidence]:
    """The case's evidence, in the order it was uploaded."""
    rows = await session.scalars(
        select(CaseEvidence)
        .where(CaseEvidence.case_id == case_id)  # type: ignore[arg-type]
        .order_by(CaseEvidence.uploaded_at, CaseEvidence.sha256)  # type: ignore[arg-type]
    )
    return list(rows)
