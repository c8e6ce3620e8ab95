"""Which county each case belongs to, for the events escalation produces about it (tenancy's
first step, docs/scale.md): learnt from the ``county`` of the case's own events as they arrive,
read back when escalation speaks of the case — at once, or days later when a ladder step fires —
and when a user reads the case's clocks, steps and whistles (tenancy's second step):
:func:`of_readers_counties` is the one condition every escalation read is filtered by.
A case escalation learnt no county for is the default county's: its events leave without one
and the outbox relay stamps the default."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    String,
    Uuid,
    bindparam,
    column,
    func,
    select,
    text,
    true,
    values,
)
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent, EventData, new_event
from contracts.tenancy import Counties
from contracts.topics import department_topic
from services.escalation import SOURCE
from services.escalation.models import CaseCounty
from services.runtime.auth import Principal

# The county a case event names, kept unless one is kept already (a case does not move between
# counties), and the county kept — this one or the first — in the same round trip, so that the
# events staged about the case need no read of it. Built once rather than per case event
# (issue #17).
LEARN = text(
    """
    WITH learnt AS (
        INSERT INTO case_county (case_id, county) VALUES (:case_id, :county)
        ON CONFLICT (case_id) DO NOTHING
        RETURNING county
    )
    SELECT county FROM learnt
    UNION ALL
    SELECT county FROM case_county WHERE case_id = :case_id
    """
).bindparams(bindparam("case_id", type_=Uuid), bindparam("county", type_=String))
COUNTY_OF = text("SELECT county FROM case_county WHERE case_id = :case_id").bindparams(
    bindparam("case_id", type_=Uuid)
)
# Set in a session's info by ``learn``: case id → the county kept for it, so that the events
# the handler then stages about the case need no read of their own.
_LEARNT = "whistle.escalation.counties"


async def learn(session: AsyncSession, event: CloudEvent) -> None:
    """Keep the county a case event names (its subject is the case id); the first one stays:
    a case does not move between counties."""
    if event.county is None or event.subject is None:
        return
    case_id = UUID(event.subject)
    # On the transaction's connection rather than through the session: a statement through
    # the session first flushes what it holds — the events staged so far in the inbox's batch,
    # one INSERT per case event instead of one per batch at commit. LEARN and COUNTY_OF read
    # and write only ``case_county``, which nothing holds in a session.
    connection = await session.connection()
    kept = await connection.scalar(LEARN, {"case_id": case_id, "county": event.county})
    # None only when another transaction learnt the case's county while this statement ran
    # (its snapshot predates that commit): ``county_of`` then reads it.
    if kept is not None:
        # A case's county never changes once kept, so what this session learnt stays true
        # after any rollback: the event that named it names it again when retried.
        session.info.setdefault(_LEARNT, {})[case_id] = kept


async def county_of(session: AsyncSession, case_id: UUID) -> str | None:
    learnt: dict[UUID, str] = session.info.get(_LEARNT, {})
    if case_id in learnt:
        return learnt[case_id]
    connection = await session.connection()  # not flushing the session: see ``learn``
    county: str | None = await connection.scalar(COUNTY_OF, {"case_id": case_id})
    return county


async def counties_of(session: AsyncSession, case_ids: Collection[UUID]) -> dict[UUID, str]:
    """The counties of several cases at once (a scheduler batch)."""
    if not case_ids:
        return {}
    rows = await session.execute(
        select(CaseCounty.case_id, CaseCounty.county).where(
            CaseCounty.case_id.in_(list(case_ids))  # type: ignore[attr-defined]
        )
    )
    return {case_id: county for case_id, county in rows.all()}


async def case_event(
    session: AsyncSession, case_id: UUID, data: EventData, now: datetime
) -> CloudEvent:
    """Escalation's event about ``case_id``, in the case's county."""
    return new_event(SOURCE, str(case_id), data, now, await county_of(session, case_id))


def department_topic_for(department: str, event: CloudEvent, counties: Counties | None) -> str:
    """The topic of ``department`` in the county ``event`` is about: a summons, or a copy of a
    chase, a supervision, a moved or recounted clock or a meeting's decision, goes to that
    county's department alone (departments of two counties share codes). ``counties`` says
    which county is the default, whose departments keep the names from before tenancy."""
    return department_topic(department, event.county, counties.default if counties else None)


def of_readers_counties(
    case_id: Any, principal: Principal, counties: Counties | None
) -> ColumnElement[bool]:
    """The rows (clocks, whistles, extensions) about cases of the principal's counties, as a
    condition on their ``case_id`` column; ``county:*`` reads every county's. Through
    ``case_county`` rather than a county column on each table: a case's county is one fact,
    learnt once, and a clock, a whistle or an extension is always about one case."""
    readable = principal.counties()
    if readable is None:
        return true()
    learnt = select(CaseCounty.county).where(CaseCounty.case_id == case_id).scalar_subquery()
    return func.coalesce(learnt, counties.default if counties else None).in_(sorted(readable))


async def outside_readers_counties(
    session: AsyncSession, case_ids: Sequence[UUID], principal: Principal, counties: Counties | None
) -> list[UUID]:
    """Those of ``case_ids`` of another county than the principal's — by the same condition
    as every read — for a write (a meeting convened, a department's submission): another
    county's case is refused as a missing one."""
    if not case_ids or principal.counties() is None:
        return []
    asked = values(column("case_id", Uuid), name="asked").data([(c,) for c in case_ids])
    inside = set(
        await session.scalars(
            select(asked.c.case_id).where(of_readers_counties(asked.c.case_id, principal, counties))
        )
    )
    return [case_id for case_id in case_ids if case_id not in inside]
