"""The ledger appends every event it consumes, whatever its type."""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from services.ledger.merkle import canonical_bytes, leaf_hash
from services.ledger.models import CaseTip, LedgerEntry, LedgerState
from services.runtime.clock import Clock


class Recorder:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        canonical = canonical_bytes(event.to_json())
        size = await session.scalar(
            update(LedgerState)
            .where(LedgerState.id == 1)  # type: ignore[arg-type]
            .values(size=LedgerState.size + 1)
            .returning(LedgerState.size)
        )
        if size is None:
            raise RuntimeError("ledger_state is missing its row; run the ledger migrations")
        session.add(
            LedgerEntry(
                seq=size - 1,
                source=event.source,
                event_id=event.id,
                type=event.type,
                subject=event.subject,
                topic=topic,
                event_time=event.time,
                recorded_at=self._clock(),
                canonical=canonical,
                leaf_hash=leaf_hash(canonical),
            )
        )
        case_id, tip_id = event.data.get("case_id"), event.data.get("tip_id")
        if case_id and tip_id:
            await session.execute(
                insert(CaseTip)
                .values(tip_id=UUID(tip_id), case_id=UUID(case_id))
                .on_conflict_do_nothing()
            )
