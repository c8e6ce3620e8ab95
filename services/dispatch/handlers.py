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

from contracts.cases import CaseStatus
from contracts.envelope import CloudEvent, new_event
from contracts.events import (
    CaseAssigned,
    CaseMerged,
    CaseOpened,
    CaseReopened,
    CaseTriageRequired,
    TipRated,
    TipReceived,
    TipSupplemented,
)
from contracts.topics import CASES
from reference.county import MatterItem, ReferenceData, Urgency
from services.dispatch.lifecycle import CITIZEN, Action, Refused, check
from services.dispatch.merging import (
    MERGEABLE_STATUSES,
    ArrivingTip,
    Candidate,
    Merge,
    MergePolicy,
    Point,
    find_merge,
)
from services.dispatch.models import HELD_STATUSES, Case, CaseTip, TipText
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


# The routing rule of a case that waits in the county's queue because no place was given.
UNLOCATED = "no_location"
RELOCATED = "群众补充位置后重新定位"


def waiting_for_a_place(case: Case) -> bool:
    """The case waits for a dispatcher only because its tip could not be located (nobody
    has assigned it by hand since, which would have changed its rule)."""
    return case.status == CaseStatus.TRIAGE and case.routing.get("rule") == UNLOCATED


class TipSupplement:
    """Handles ``whistle.tip.supplemented``: a place sent after the text (a WeChat location)
    locates a case that could not be located, which then goes on as a new tip would: routed
    and assigned, or queued in its township. A case already placed keeps its place (intake
    and the ledger keep the supplement); attachments alone change nothing here."""

    def __init__(
        self,
        reference: Callable[[], ReferenceData],
        clock: Clock,
        *,
        confidence_threshold: float,
        timezone: str,
    ) -> None:
        self._reference = reference
        self._clock = clock
        self._threshold = confidence_threshold
        self._zone = ZoneInfo(timezone)

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        supplement = event.payload(TipSupplemented)
        if supplement.location is None and not supplement.address:
            return
        case = await session.scalar(
            select(Case).where(Case.tip_id == supplement.tip_id).with_for_update()  # type: ignore[arg-type]
        )
        if case is None or not waiting_for_a_place(case):
            log.info(
                "tip %s: a place was supplied for %s; dispatch keeps the case as it is",
                supplement.tip_id,
                f"case {case.id} ({case.status})" if case else "a tip with no case of its own",
            )
            return
        said = await session.get(TipText, case.tip_id)
        if said is None:
            log.warning("tip %s: its text is not kept, so case %s stays", case.tip_id, case.id)
            return
        reference = self._reference()
        triaged = Triaged(
            classify(said.text, None, reference),
            locate(None, supplement.address or said.address, reference, supplement.location),
        )
        location = triaged.location
        if location.township is None:
            log.info("tip %s: the supplied place locates nothing: %s", case.tip_id, location)
            return
        now = self._clock()
        item = triaged.classification.item
        case.matter_code = item.code if item else None
        case.urgency = (item.default_urgency if item else Urgency.GENERAL).value
        case.township_code, case.village_code = location.township, location.village
        case.grid_id = location.grid
        if supplement.location is not None:
            case.lat, case.lon = supplement.location.lat, supplement.location.lon
        case.catalogue_version = reference.version
        case.version += 1
        case.updated_at = now
        cause = (RELOCATED, *location.explanation)
        # The case's story so far stays; its matter is said again only if it reads differently.
        before: list[str] = case.routing.get("explanation", [])
        explanation = [
            *before,
            *cause,
            *(line for line in triaged.classification.explanation if line not in before),
        ]
        await _dispatch(
            session, case, triaged, explanation, reference, now, self._threshold, self._zone, cause
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
    case_id = case_id or uuid7()
    case = Case(
        id=case_id,
        tip_id=tip.tip_id,
        status=CaseStatus.TRIAGE.value,
        matter_code=item.code if item else None,
        township_code=location.township,
        village_code=location.village,
        grid_id=location.grid,
        lat=tip.location.lat if tip.location else None,
        lon=tip.location.lon if tip.location else None,
        urgency=urgency.value,
        catalogue_version=reference.version,
        routing={},
        created_at=now,
        updated_at=now,
    )
    explanation = [*location.explanation, *classification.explanation]
    stage(
        session,
        CASES,
        new_event(
            SOURCE,
            str(case_id),
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
    await _dispatch(session, case, triaged, explanation, reference, now, confidence_threshold, zone)
    # Added once routed, so that the open-load query does not flush it first: one insert.
    session.add(case)
    return case


async def _dispatch(
    session: AsyncSession,
    case: Case,
    triaged: Triaged,
    explanation: list[str],
    reference: ReferenceData,
    now: datetime,
    confidence_threshold: float,
    zone: ZoneInfo,
    cause: tuple[str, ...] = (),
) -> None:
    """Route the triaged case, or queue it for a dispatcher: set the case so and stage the
    assignment (and the automatic whistle) or the triage queue. ``explanation`` is how the
    case was triaged; the routing's reasons follow it. ``cause`` says why a case already
    opened is dispatched again, at the head of the event's explanation."""
    classification, location = triaged.classification, triaged.location
    item = classification.item
    outcome: Assignment | NeedsTriage
    if location.township is None:
        outcome = NeedsTriage("county", UNLOCATED, "无法确定所属乡镇，转县级分拨")
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

    case.routing = {"rule": outcome.rule, "explanation": list(explanation)}
    data: CaseAssigned | CaseTriageRequired
    if isinstance(outcome, NeedsTriage):
        case.status, case.queue = CaseStatus.TRIAGE.value, outcome.queue
        case.routing["explanation"].append(outcome.reason)
        data = CaseTriageRequired(
            case_id=case.id,
            tip_id=case.tip_id,
            queue=outcome.queue,
            reason="；".join((*cause, outcome.reason)),
            catalogue_version=reference.version,
        )
    else:
        assert item is not None
        case.status, case.queue = CaseStatus.ASSIGNED.value, None
        case.unit_id = outcome.unit.id
        case.staff_id = outcome.staff.id if outcome.staff else None
        case.supporting_units = [u.id for u in outcome.supporting]
        case.routing["explanation"].extend(outcome.explanation)
        data = case.assignment(
            outcome.unit.kind.value,
            item,
            reference.version,
            outcome.rule,
            [*cause, *outcome.explanation],
        )
    stage(session, CASES, new_event(SOURCE, str(case.id), data, now))
    if isinstance(outcome, Assignment):
        _whistle_if_beyond_the_township(session, case, outcome, reference, now)


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
    return find_merge(ArrivingTip(item.code, triaged.location.grid, point), candidates, now, policy)


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
        verdict = check(CaseStatus(case.status), Action.REOPEN, frozenset({CITIZEN}))
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
