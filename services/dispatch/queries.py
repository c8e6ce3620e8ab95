"""Read queries over dispatch's cases, scoped to the caller: the triage and admission queues,
the open-case list and a single case, and what a case's page shows (its tips, clocks and
timeline). Shared by the case service (cases.py), the JSON API (api.py, coordination_api.py)
and the console (console_api.py), so a case is visible in a list exactly when its page may be
read and acted on: one scoping rule, :func:`visible_to`."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, bindparam, false, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.cases import CaseStatus
from contracts.events import ActingFor, DeadlineRecomputed, DeadlinesSet, Penalty
from contracts.tenancy import COUNTY_SCOPE
from reference.county import CountySet, ReferenceData, Staff
from services.dispatch.deadline_colour import ClockKey, provisional_clocks
from services.dispatch.models import (
    HELD_STATUSES,
    PENDING,
    PROPOSED,
    AdmissionDecision,
    Case,
    CaseClock,
    CaseTimelineEntry,
    CaseTip,
    LegalReview,
    TipText,
    Whistle,
)
from services.dispatch.publicity import ClosedCase
from services.dispatch.routing import ADMISSION_QUEUE, Assignment, route
from services.dispatch.triage import rank
from services.runtime.auth import Principal

SUGGESTIONS = 3

M = TypeVar("M", bound=BaseModel)
LIST_LIMIT = 500
COUNTY_QUEUE = "county"
ARBITRATION_QUEUE = "arbitration"


def scoped_codes(principal: Principal, kind: str) -> set[str]:
    """The codes a principal's scopes name for ``kind`` ("*" for all of them)."""
    return {s.split(":", 1)[1] for s in principal.scopes if s.startswith(f"{kind}:")}


def own_county(principal: Principal) -> str | None:
    """The one county a principal's scopes name, where it acts (a department refers in it);
    None when they name several or all (``county:*``)."""
    counties = scoped_codes(principal, COUNTY_SCOPE)
    return next(iter(counties)) if len(counties) == 1 and "*" not in counties else None


def reference_for(
    counties: CountySet,
    principal: Principal,
    *,
    case: Case | None = None,
    chosen: str | None = None,
) -> ReferenceData:
    """The reference data a reader's view names townships, units, staff and matters by — the
    one rule of every console view and read of dispatch: for a row or page about a ``case``,
    its own county's (the reader may read it: :func:`visible_to`); for a form about no case,
    the county the reader ``chosen`` (a city token, ``county:*``, may choose any; another
    token only its own), else the one county the token names (a city token, or one naming
    several counties: the default county if it reads it, else the first of its own).
    LookupError: that county is not served here, or not the token's."""
    if case is not None:
        return counties.of(case.county)
    county = chosen or own_county(principal)
    if county is None:
        reached = principal.counties()
        if not reached or counties.default.county.code in reached:
            return counties.default
        county = min(reached)
    if county not in counties or not principal.may_act_on(COUNTY_SCOPE, county):
        raise LookupError(county)
    return counties[county]


def readers_counties(counties: CountySet, principal: Principal) -> list[ReferenceData]:
    """Every county's reference data the principal reads (all of them for ``county:*``)."""
    reached = principal.counties()
    return [data for code, data in counties.items() if reached is None or code in reached]


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The cases the principal may read, as a condition: of their counties (``county:<code>``;
    ``county:*`` for the city's roles; a token naming none is the default county's), then the
    county (its supervisor, government and legal reviewers), auditors and admins all;
    a dispatcher their townships'; a unit member their units' and the joint operations (联合执法)
    their units support. Another county's case is then as invisible as another township's."""
    counties = scoped_codes(principal, COUNTY_SCOPE)
    in_county = true() if "*" in counties else Case.county.in_(counties)  # type: ignore[attr-defined]
    in_scope = scoped_to(principal, Case.township_code, Case.unit_id, Case.supporting_units)
    return and_(in_county, in_scope)


def scoped_to(
    principal: Principal, township: Any, unit: Any, supporting: Any = None
) -> ColumnElement[bool]:
    """The rows whose ``township`` and ``unit`` columns (and ``supporting`` units) the
    principal's scopes reach, within a county, as in :func:`visible_to`; inspection tasks are
    read by it too (their townships and units are one county's: codes are unique across
    counties, reference/county.py)."""
    county_wide = {"county_supervisor", "county_government", "legal_reviewer", "auditor", "admin"}
    if principal.roles & county_wide:
        return true()
    conditions: list[ColumnElement[bool]] = []
    if "dispatcher" in principal.roles:
        townships = scoped_codes(principal, "township")
        if "*" in townships:
            return true()
        conditions.append(township.in_(townships))
    if "unit_member" in principal.roles:
        units = scoped_codes(principal, "unit")
        if "*" in units:
            return true()
        conditions.append(unit.in_(units))
        if supporting is not None:
            conditions.append(supporting.overlap(sorted(units)))
    return or_(*conditions) if conditions else false()


async def readable_case(
    session: AsyncSession, principal: Principal, case_id: UUID, *, for_update: bool = False
) -> Case | None:
    """The case, if the principal may read it (locked for the transaction with ``for_update``)."""
    query = select(Case).where(Case.id == case_id, visible_to(principal))  # type: ignore[arg-type]
    if for_update:
        query = query.with_for_update()
    case: Case | None = await session.scalar(query)
    return case


# Open cases per staff member; routing reads it per tip, so both forms are built once.
_HELD = Case.__table__.c  # type: ignore[attr-defined]
OPEN_LOAD = (
    select(_HELD.staff_id, func.count())
    .where(_HELD.status.in_(HELD_STATUSES), _HELD.staff_id.is_not(None))
    .group_by(_HELD.staff_id)
)
OPEN_LOAD_OF = OPEN_LOAD.where(_HELD.staff_id.in_(bindparam("staff", expanding=True)))


async def open_load(session: AsyncSession, staff: Iterable[Staff] | None = None) -> dict[str, int]:
    """How many open cases each staff member holds (of ``staff``, or of everyone): routing a
    case reads its leading unit's staff only, not a count that grows with the county."""
    if staff is None:
        rows = await session.execute(OPEN_LOAD)
    else:
        rows = await session.execute(OPEN_LOAD_OF, {"staff": [s.id for s in staff]})
    return {staff_id: count for staff_id, count in rows.all()}


@dataclass(frozen=True)
class Suggestion:
    """A catalogue item the classifier proposes, and the unit routing would pick for it."""

    matter_code: str
    name: str
    score: float
    keywords: tuple[str, ...]
    unit_id: str | None
    unit_name: str | None


def suggestions(
    text: str | None,
    reference: ReferenceData,
    case: Case,
    load: dict[str, int],
    today: date,
) -> tuple[Suggestion, ...]:
    """The classifier's best items for the tip's words (by the catalogue in force), each with
    the unit routing would assign in the case's township (none where it would not assign)."""
    if not text:
        return ()
    scored, _ = rank(text, reference)
    proposed = []
    for score, item, words in scored[:SUGGESTIONS]:
        unit = None
        if case.township_code:
            outcome = route(item, case.township_code, case.village_code, reference, load, today)
            unit = outcome.unit if isinstance(outcome, Assignment) else None
        proposed.append(
            Suggestion(
                item.code,
                item.name,
                score,
                tuple(words),
                unit.id if unit else None,
                unit.name if unit else None,
            )
        )
    return tuple(proposed)


@dataclass(frozen=True)
class Waiting:
    """A case waiting in a queue, with what a dispatcher needs to decide."""

    case: Case
    text: str | None
    reason: str | None
    age_seconds: int
    suggestions: tuple[Suggestion, ...]


async def _waiting(
    session: AsyncSession,
    counties: CountySet,
    principal: Principal,
    now: datetime,
    today: date,
    *conditions: ColumnElement[bool],
) -> list[Waiting]:
    rows = (
        await session.execute(
            select(Case, TipText.text)
            .outerjoin(TipText, TipText.tip_id == Case.tip_id)  # type: ignore[arg-type]
            .where(visible_to(principal), *conditions)
            .order_by(Case.created_at)  # type: ignore[arg-type]
            .limit(LIST_LIMIT)
        )
    ).all()
    load = await open_load(session) if rows else {}
    waiting = []
    for case, text in rows:
        explanation = case.routing.get("explanation") or [None]
        waiting.append(
            Waiting(
                case=case,
                text=text,
                reason=explanation[-1],
                age_seconds=max(0, int((now - case.created_at).total_seconds())),
                # Its own county's catalogue and units: a 桃林县 case is never proposed to a
                # 清溪县 unit.
                suggestions=suggestions(
                    text, reference_for(counties, principal, case=case), case, load, today
                ),
            )
        )
    return waiting


def township_queue(township: str) -> str:
    return f"township:{township}"


def queues_of(principal: Principal, counties: CountySet) -> list[str]:
    """The triage queues the principal works: a dispatcher their townships' (``township:*``:
    every township of their counties), the county its own (where the cases rejected twice
    also wait, for arbitration)."""
    if "county_supervisor" in principal.roles:
        return [COUNTY_QUEUE]
    townships = scoped_codes(principal, "township") if "dispatcher" in principal.roles else set()
    if "*" in townships:
        townships = {t for data in readers_counties(counties, principal) for t in data.townships}
    return [township_queue(t) for t in sorted(townships)]


async def triage_queue(
    session: AsyncSession,
    counties: CountySet,
    principal: Principal,
    queues: Collection[str],
    now: datetime,
    today: date,
) -> list[Waiting]:
    """Cases waiting in ``queues`` ("township:<code>" or "county") that the principal may read,
    oldest first. The county's queue also holds the cases waiting for arbitration."""
    statuses, names = [CaseStatus.TRIAGE.value], list(queues)
    if COUNTY_QUEUE in names:
        statuses.append(CaseStatus.ARBITRATION.value)
        names.append(ARBITRATION_QUEUE)
    return await _waiting(
        session,
        counties,
        principal,
        now,
        today,
        Case.status.in_(statuses),  # type: ignore[attr-defined]
        Case.queue.in_(names),  # type: ignore[union-attr]
    )


async def admission_queue(
    session: AsyncSession,
    counties: CountySet,
    principal: Principal,
    now: datetime,
    today: date,
    queue: str = ADMISSION_QUEUE,
) -> list[Waiting]:
    """Out-of-list cases waiting for an admission step (准入), oldest first: in
    ``ADMISSION_QUEUE`` for the county supervisor's proposal (待准入), in
    ``ADMISSION_APPROVAL_QUEUE`` for the county government's approval (待批准)."""
    return await _waiting(
        session,
        counties,
        principal,
        now,
        today,
        Case.status == CaseStatus.TRIAGE.value,  # type: ignore[arg-type]
        Case.queue == queue,  # type: ignore[arg-type]
    )


async def pending_proposals(
    session: AsyncSession, case_ids: Collection[UUID]
) -> dict[UUID, AdmissionDecision]:
    """The admission proposal each of the cases waits on the county government for."""
    if not case_ids:
        return {}
    rows = await session.scalars(
        select(AdmissionDecision).where(
            AdmissionDecision.case_id.in_(case_ids),  # type: ignore[attr-defined]
            AdmissionDecision.status == PROPOSED,  # type: ignore[arg-type]
        )
    )
    return {row.case_id: row for row in rows}


async def legal_review_queue(
    session: AsyncSession, principal: Principal
) -> list[tuple[Case, LegalReview]]:
    """Penalty decisions waiting for legal review (待法制审核) on cases the principal may read,
    each with its case, longest waiting first."""
    rows = await session.execute(
        select(Case, LegalReview)
        .join(LegalReview, LegalReview.case_id == Case.id)  # type: ignore[arg-type]
        .where(
            Case.status == CaseStatus.LEGAL_REVIEW.value,  # type: ignore[arg-type]
            LegalReview.status == PENDING,  # type: ignore[arg-type]
            visible_to(principal),
        )
        .order_by(LegalReview.requested_at)  # type: ignore[arg-type]
    )
    return [(case, review) for case, review in rows.all()]


async def open_cases(
    session: AsyncSession,
    principal: Principal,
    *,
    townships: Sequence[str] = (),
    statuses: Sequence[str] = (),
    unit: str | None = None,
    matters: Sequence[str] = (),
) -> list[Case]:
    """Open cases the principal may read, most recently changed first, filtered by township,
    state, unit (lead or supporting) and matter."""
    query = select(Case).where(
        visible_to(principal),
        Case.status != CaseStatus.CLOSED.value,  # type: ignore[arg-type]
    )
    if townships:
        query = query.where(Case.township_code.in_(townships))  # type: ignore[union-attr]
    if statuses:
        query = query.where(Case.status.in_(statuses))  # type: ignore[attr-defined]
    if unit:
        query = query.where(
            or_(Case.unit_id == unit, Case.supporting_units.contains([unit]))  # type: ignore[attr-defined]
        )
    if matters:
        query = query.where(Case.matter_code.in_(matters))  # type: ignore[union-attr]
    query = query.order_by(Case.updated_at.desc(), Case.id).limit(LIST_LIMIT)  # type: ignore[attr-defined]
    return list(await session.scalars(query))


async def tip_texts(session: AsyncSession, cases: Collection[Case]) -> dict[UUID, TipText]:
    """The citizen's words of each case's own tip, by tip id."""
    rows = await session.scalars(
        select(TipText).where(TipText.tip_id.in_([c.tip_id for c in cases]))  # type: ignore[attr-defined]
    )
    return {row.tip_id: row for row in rows}


async def case_clocks(
    session: AsyncSession, case_ids: Collection[UUID]
) -> dict[UUID, list[CaseClock]]:
    """Each case's clocks as escalation announced them, by round and kind."""
    rows = await session.scalars(
        select(CaseClock)
        .where(CaseClock.case_id.in_(case_ids))  # type: ignore[attr-defined]
        .order_by(CaseClock.round, CaseClock.kind)  # type: ignore[arg-type]
    )
    clocks: dict[UUID, list[CaseClock]] = {}
    for row in rows:
        clocks.setdefault(row.case_id, []).append(row)
    return clocks


async def provisional_case_clocks(
    session: AsyncSession, case_ids: Collection[UUID]
) -> set[ClockKey]:
    """The cases' clocks escalation counted provisionally and has not counted again yet, read
    from their timelines (deadline_colour.provisional_clocks says how)."""
    if not case_ids:
        return set()
    rows = await session.execute(
        select(CaseTimelineEntry.case_id, CaseTimelineEntry.type, CaseTimelineEntry.data)
        .where(
            CaseTimelineEntry.case_id.in_(case_ids),  # type: ignore[attr-defined]
            CaseTimelineEntry.type.in_(  # type: ignore[attr-defined]
                [DeadlinesSet.event_type, DeadlineRecomputed.event_type]
            ),
        )
        .order_by(CaseTimelineEntry.time)  # type: ignore[arg-type]
    )
    return provisional_clocks((r.case_id, r.type, r.data) for r in rows)


async def merged_tips(session: AsyncSession, case_id: UUID) -> list[CaseTip]:
    """The tips that joined a case by merge (and those split off since), in the order they
    joined."""
    return list(
        await session.scalars(
            select(CaseTip)
            .where(CaseTip.case_id == case_id)  # type: ignore[arg-type]
            .order_by(CaseTip.joined_at, CaseTip.tip_id)  # type: ignore[arg-type]
        )
    )


async def timeline(session: AsyncSession, case_id: UUID) -> list[CaseTimelineEntry]:
    """Every event of the case that dispatch consumed, in the order they happened."""
    return list(
        await session.scalars(
            select(CaseTimelineEntry)
            .where(CaseTimelineEntry.case_id == case_id)  # type: ignore[arg-type]
            .order_by(CaseTimelineEntry.time)  # type: ignore[arg-type]
        )
    )


async def summoned(session: AsyncSession, case_id: UUID) -> frozenset[str]:
    """The departments already whistled for a case."""
    rows = await session.scalars(
        select(Whistle.departments).where(Whistle.case_id == case_id)  # type: ignore[call-overload]
    )
    return frozenset(code for departments in rows for code in departments)


CLOSED = "whistle.case.closed"
RESOLVED = "whistle.case.resolved"
ASSIGNED = "whistle.case.assigned"


async def closed_cases(
    session: AsyncSession,
    closed_before: datetime,
    limit: int,
    matters: Collection[str] | None = None,
) -> list[ClosedCase]:
    """The cases closed (and still closed) at or before ``closed_before`` after a resolution,
    latest closed first, of ``matters`` only if given (in the query, so a page is full); each
    with its latest resolution and its first assignment."""
    closes = (
        select(
            CaseTimelineEntry.case_id,
            func.max(CaseTimelineEntry.time).label("closed_at"),
        )
        .where(CaseTimelineEntry.type == CLOSED)  # type: ignore[arg-type]
        .group_by(CaseTimelineEntry.case_id)  # type: ignore[arg-type]
        .subquery()
    )
    rows = (
        await session.execute(
            select(Case, closes.c.closed_at)
            .join(closes, closes.c.case_id == Case.id)  # type: ignore[arg-type]
            .where(
                Case.status == CaseStatus.CLOSED,  # type: ignore[arg-type]
                closes.c.closed_at <= closed_before,
                Case.matter_code.in_(matters) if matters is not None else true(),  # type: ignore[union-attr]
                # Closed after a resolution: a case whose admission was declined has none.
                Case.id.in_(  # type: ignore[attr-defined]
                    select(CaseTimelineEntry.case_id).where(CaseTimelineEntry.type == RESOLVED)  # type: ignore[arg-type]
                ),
            )
            .order_by(closes.c.closed_at.desc(), Case.id)  # type: ignore[arg-type]
            .limit(limit)
        )
    ).all()
    entries = await session.scalars(
        select(CaseTimelineEntry)
        .where(
            CaseTimelineEntry.case_id.in_([case.id for case, _ in rows]),  # type: ignore[attr-defined]
            CaseTimelineEntry.type.in_([RESOLVED, ASSIGNED]),  # type: ignore[attr-defined]
        )
        .order_by(CaseTimelineEntry.time)  # type: ignore[arg-type]
    )
    resolved: dict[UUID, CaseTimelineEntry] = {}
    assigned: dict[UUID, datetime] = {}
    for entry in entries:
        if entry.type == RESOLVED:
            resolved[entry.case_id] = entry  # the latest round's
        else:
            assigned.setdefault(entry.case_id, entry.time)
    return [
        ClosedCase(
            case_id=case.id,
            matter_code=case.matter_code,
            township_code=case.township_code,
            village_code=case.village_code,
            unit_id=case.unit_id,
            staff_id=case.staff_id,
            opened_at=case.created_at,
            assigned_at=assigned.get(case.id),
            resolved_at=resolved[case.id].time,
            resolution=resolved[case.id].data["resolution"],
            closed_at=closed_at,
            acting_in_name_of=_model(ActingFor, resolved[case.id].data.get("acting_in_name_of")),
            penalty=_model(Penalty, resolved[case.id].data.get("penalty")),
        )
        for case, closed_at in rows
        if case.id in resolved and resolved[case.id].time <= closed_at
    ]


def _model(model: type[M], data: dict[str, Any] | None) -> M | None:
    return model.model_validate(data) if data else None
