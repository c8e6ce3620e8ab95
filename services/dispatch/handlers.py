"""Dispatch turns each received tip into a case (or joins it to an open case of the same
problem), and reopens a case its citizen is dissatisfied with: triage, route, say so in events."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import CloudEvent, new_event
from contracts.events import (
    CaseAssigned,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    CaseTriageRequired,
    TipRated,
    TipReceived,
)
from contracts.topics import CASES
from services.dispatch.lifecycle import CITIZEN, Action, Refused, Status, check
from services.dispatch.merging import (
    MERGEABLE_STATUSES,
    Candidate,
    Merge,
    MergePolicy,
    NewTip,
    Point,
    find_merge,
)
from services.dispatch.models import HELD_STATUSES, Case, CaseTip
from services.dispatch.reference import MatterItem, ReferenceData, Urgency
from services.dispatch.routing import Assignment, NeedsTriage, route
from services.dispatch.triage import Classification, Location, classify, locate
from services.dispatch.whistles import automatic_whistle, new_whistle
from services.runtime.clock import Clock
from services.runtime.inbox import PoisonEvent
from services.runtime.outbox import stage

SOURCE = "whistle/dispatch"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Triaged:
    classification: Classification
    location: Location

    def routable_item(self, threshold: float) -> MatterItem | None:
        """The matter, when it is confident enough and the place is known: the tip may be
        routed without a dispatcher (and so may join an open case of that matter)."""
        item = self.classification.item
        if item is None or self.location.township is None:
            return None
        return item if self.classification.confidence >= threshold else None


def examine(tip: TipReceived, reference: ReferenceData) -> Triaged:
    return Triaged(
        classify(tip.text, tip.category_hint, reference),
        locate(tip.grid_id, tip.address, reference, tip.location),
    )


class TipIntake:
    """Handles ``whistle.tip.received``: the tip joins an open case of the same matter nearby
    (``merging.py``), else opens a case of its own."""

    def __init__(
        self,
        reference: Callable[[], ReferenceData],
        clock: Clock,
        *,
        confidence_threshold: float,
        timezone: str,
        merge: MergePolicy,
    ) -> None:
        self._reference = reference
        self._clock = clock
        self._threshold = confidence_threshold
        self._zone = ZoneInfo(timezone)
        self._merge = merge

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        tip = event.payload(TipReceived)
        reference = self._reference()
        now = self._clock()
        triaged = examine(tip, reference)
        item = triaged.routable_item(self._threshold)
        if item is not None and self._merge.enabled:
            merge = await _find_open_duplicate(session, tip, triaged, item, now, self._merge)
            if merge is not None:
                _join(session, tip, triaged, item, merge, reference, now, self._merge)
                return
        await open_case(
            session,
            tip,
            reference,
            now,
            confidence_threshold=self._threshold,
            zone=self._zone,
            triaged=triaged,
        )


async def open_case(
    session: AsyncSession,
    tip: TipReceived,
    reference: ReferenceData,
    now: datetime,
    *,
    confidence_threshold: float,
    zone: ZoneInfo,
    case_id: UUID | None = None,
    triaged: Triaged | None = None,
) -> Case:
    """Open a case of its own for ``tip``: triage it (unless ``triaged`` already), route it,
    and stage ``whistle.case.opened`` and the assignment or the triage queue."""
    triaged = triaged or examine(tip, reference)
    classification, location = triaged.classification, triaged.location
    item = classification.item
    urgency = item.default_urgency if item else Urgency.GENERAL

    outcome: Assignment | NeedsTriage
    if location.township is None:
        outcome = NeedsTriage("county", "no_location", "无法确定所属乡镇，转县级分拨")
    elif item is None or classification.confidence < confidence_threshold:
        outcome = NeedsTriage(
            f"township:{location.township}",
            "low_confidence",
            f"事项识别置信度 {classification.confidence:.2f} 低于 {confidence_threshold:.2f}，"
            "待调度员人工分拨",
        )
    else:
        outcome = route(
            item,
            location.township,
            location.village,
            reference,
            await open_load(session),
            now.astimezone(zone).date(),
        )

    case_id = case_id or uuid7()
    explanation = [*location.explanation, *classification.explanation]
    case = Case(
        id=case_id,
        tip_id=tip.tip_id,
        status="assigned" if isinstance(outcome, Assignment) else "triage",
        matter_code=item.code if item else None,
        township_code=location.township,
        village_code=location.village,
        grid_id=location.grid,
        lat=tip.location.lat if tip.location else None,
        lon=tip.location.lon if tip.location else None,
        urgency=urgency.value,
        catalogue_version=reference.version,
        routing={"rule": outcome.rule, "explanation": explanation},
        created_at=now,
        updated_at=now,
    )
    subject = str(case_id)
    stage(
        session,
        CASES,
        new_event(
            SOURCE,
            subject,
            CaseOpened(
                case_id=case_id,
                tip_id=tip.tip_id,
                matter_code=case.matter_code,
                matter_name=item.name if item else None,
                confidence=classification.confidence,
                township_code=location.township,
                village_code=location.village,
                grid_id=location.grid,
                urgency=urgency.value,
                catalogue_version=reference.version,
                explanation=explanation,
            ),
            now,
        ),
    )
    if isinstance(outcome, NeedsTriage):
        case.queue = outcome.queue
        case.routing["explanation"].append(outcome.reason)
        data: CaseAssigned | CaseTriageRequired = CaseTriageRequired(
            case_id=case_id,
            tip_id=tip.tip_id,
            queue=outcome.queue,
            reason=outcome.reason,
            catalogue_version=reference.version,
        )
    else:
        assert item is not None
        case.unit_id = outcome.unit.id
        case.staff_id = outcome.staff.id if outcome.staff else None
        case.supporting_units = [u.id for u in outcome.supporting]
        case.routing["explanation"].extend(outcome.explanation)
        data = CaseAssigned(
            case_id=case_id,
            tip_id=tip.tip_id,
            unit_id=outcome.unit.id,
            unit_kind=outcome.unit.kind.value,
            township_code=location.township,
            staff_id=case.staff_id,
            matter_code=item.code,
            authority=item.authority.value,
            urgency=urgency.value,
            deadline_policy=item.deadline_policy,
            catalogue_version=reference.version,
            rule=outcome.rule,
            explanation=list(outcome.explanation),
            supporting_units=case.supporting_units,
        )
    session.add(case)
    stage(session, CASES, new_event(SOURCE, subject, data, now))
    if isinstance(outcome, Assignment):
        _whistle_if_beyond_the_township(session, case, outcome, reference, now)
    return case


def _whistle_if_beyond_the_township(
    session: AsyncSession,
    case: Case,
    outcome: Assignment,
    reference: ReferenceData,
    now: datetime,
) -> None:
    """A county-only or unclaimed matter went to the county: the whistle is blown for the
    township at once, so the department's 报到 clock starts with the case."""
    automatic = automatic_whistle(outcome.rule, outcome.unit)
    if automatic is None:
        return
    rules = reference.whistle_rules
    whistle, blown = new_whistle(
        uuid7(),
        case,
        automatic.departments,
        rules.automatic_reason if rules else "beyond_powers",
        automatic.reason,
        automatic.rule,
        automatic=True,
        actor=SOURCE,
        actor_role="routing",
        at=now,
    )
    session.add(whistle)
    stage(session, CASES, new_event(SOURCE, str(case.id), blown, now))


async def open_load(session: AsyncSession) -> dict[str, int]:
    """How many open cases each staff member holds."""
    rows = await session.execute(
        select(Case.staff_id, func.count())
        .where(Case.status.in_(HELD_STATUSES), Case.staff_id.is_not(None))  # type: ignore[attr-defined]
        .group_by(Case.staff_id)
    )
    return {staff_id: count for staff_id, count in rows.all()}


async def _find_open_duplicate(
    session: AsyncSession,
    tip: TipReceived,
    triaged: Triaged,
    item: MatterItem,
    now: datetime,
    policy: MergePolicy,
) -> Merge | None:
    # Two reports of one problem handled at once (another partition, another replica) must
    # not both open a case: decisions for one matter take turns until their commit.
    await session.execute(select(func.pg_advisory_xact_lock(_merge_lock_key(item.code))))
    cases = await session.scalars(
        select(Case).where(
            Case.matter_code == item.code,  # type: ignore[arg-type]
            Case.created_at >= now - policy.window,  # type: ignore[arg-type,operator]
            Case.status.in_([s.value for s in MERGEABLE_STATUSES]),  # type: ignore[attr-defined]
        )
    )
    candidates = [
        Candidate(
            case_id=case.id,
            status=case.status,
            matter_code=case.matter_code,
            grid_id=case.grid_id,
            point=Point(case.lat, case.lon)
            if case.lat is not None and case.lon is not None
            else None,
            opened_at=case.created_at,
        )
        for case in cases
    ]
    point = Point(tip.location.lat, tip.location.lon) if tip.location else None
    return find_merge(NewTip(item.code, triaged.location.grid, point), candidates, now, policy)


def _merge_lock_key(matter_code: str) -> int:
    """A stable 32-bit key for PostgreSQL's advisory lock on merging into one matter."""
    return zlib.crc32(f"dispatch.merge:{matter_code}".encode())


def _join(
    session: AsyncSession,
    tip: TipReceived,
    triaged: Triaged,
    item: MatterItem,
    merge: Merge,
    reference: ReferenceData,
    now: datetime,
    policy: MergePolicy,
) -> None:
    """The tip joins the open case: a link and an event; no case, assignment or deadline."""
    session.add(
        CaseTip(
            tip_id=tip.tip_id,
            case_id=merge.case_id,
            joined_at=now,
            rule=merge.rule,
            distance_m=merge.distance_m,
            tip=tip.model_dump(mode="json"),
        )
    )
    explanation = [
        *triaged.location.explanation,
        *triaged.classification.explanation,
        *merge.explanation,
    ]
    merged = CaseMerged(
        case_id=merge.case_id,
        tip_id=tip.tip_id,
        matter_code=item.code,
        rule=merge.rule,
        distance_m=merge.distance_m,
        window_hours=policy.window.total_seconds() / 3600,
        catalogue_version=reference.version,
        explanation=explanation,
    )
    stage(session, CASES, new_event(SOURCE, str(merge.case_id), merged, now))


class RatingReopen:
    """Handles ``whistle.tip.rated``: a dissatisfied citizen reopens a resolved or closed case
    (回访不满意), by the lifecycle's rules; other ratings change nothing in dispatch."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        rating = event.payload(TipRated)
        if rating.rating != "dissatisfied":
            return
        case = await session.get(Case, rating.case_id, with_for_update=True)
        if case is None:
            raise PoisonEvent(f"a rating for case {rating.case_id}, which dispatch does not have")
        if rating.tip_id != case.tip_id and await session.get(CaseTip, rating.tip_id) is None:
            raise PoisonEvent(f"tip {rating.tip_id} is not a tip of case {case.id}")
        verdict = check(Status(case.status), Action.REOPEN, frozenset({CITIZEN}))
        if isinstance(verdict, Refused):
            # Intake only lets a resolved case be rated, but the topic is not proof of that.
            log.warning(
                "ignoring a dissatisfied rating of tip %s: %s", rating.tip_id, verdict.reason
            )
            return
        now = self._clock()
        case.status = verdict.to.value
        case.reopens += 1
        case.version += 1
        case.updated_at = now
        reason = f"群众不满意: {rating.comment}" if rating.comment else "群众不满意"
        reopened = CaseReopened(**case.step(CITIZEN, CITIZEN), reason=reason)
        stage(session, CASES, new_event(SOURCE, str(case.id), reopened, now))
