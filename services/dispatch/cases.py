"""The case service: every change to a case, from its tip's arrival to its closing.

Each command loads the case (locked for its transaction), asks the pure rules — triage.py and
routing.py where a tip goes, lifecycle.py which step may follow which and by whom, merging.py
which tips are one problem, whistles.py the county's whistle rules — applies their answer to
the case, and stages the events that say so in the same transaction (the outbox). A refusal is
a domain error (errors.py): nothing of the command is kept, and the edge that called — a router,
or consumers.py — says it in its own terms.

Commands take who acts (a ``Principal``; a citizen acts only through a rating) and the version
of the case they saw; the service holds the session, the reference data in force, the clock
and dispatch's settings for the one transaction it serves.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal, TypeVar
from uuid import UUID
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.cases import CaseStatus
from contracts.envelope import EventData, new_event
from contracts.events import (
    ActingFor,
    CaseAccepted,
    CaseAdmissionDecided,
    CaseAdmissionProposed,
    CaseAssigned,
    CaseAssistanceRequested,
    CaseClosed,
    CaseContacted,
    CaseLegalReviewDecided,
    CaseLegalReviewRequested,
    CaseMerged,
    CaseOpened,
    CaseProgressRecorded,
    CaseReferred,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseStep,
    CaseTriageRequired,
    ContactMethod,
    GeoPoint,
    Penalty,
    TipRated,
    TipReceived,
    TipSupplemented,
)
from contracts.topics import CASES
from reference.county import MatterItem, ReferenceData, Staff, Unit, UnitKind, Urgency
from services.dispatch.authority import (
    AdmissionInForce,
    Verdict,
    assistance_refusal,
    judge_assignment,
    judge_referral,
)
from services.dispatch.classifier import TriageModel
from services.dispatch.enforcement import acting_capacity, entrustment_refusal, major_decisions
from services.dispatch.errors import (
    AdmissionRequired,
    AssignmentNotAuthorised,
    AssignmentRefusal,
    AssignmentRefused,
    AssistanceRefused,
    BeyondEntrustment,
    CaseNotFound,
    CertificateRequired,
    ClosingBeforeFollowUp,
    ContactRefused,
    DispatchError,
    NotAwaitingAdmission,
    NotAwaitingLegalReview,
    NotPermitted,
    ReferralKeyReused,
    ReferralRefused,
    SplitRefused,
    StaleVersion,
    TipNotOfCase,
    TransitionRefused,
    UnknownEvidence,
    WhistleRefused,
)
from services.dispatch.evidence import record as record_evidence
from services.dispatch.evidence import stored_among
from services.dispatch.field_record import (
    find_staff,
    officer_record,
    step_place,
)
from services.dispatch.lifecycle import (
    CITIZEN,
    COUNTY,
    DISPATCHER,
    UNIT,
    Action,
    Allowed,
    FollowUp,
    Refused,
    acting_as,
    check,
    closes_at,
)
from services.dispatch.merging import (
    MERGEABLE_STATUSES,
    ArrivingTip,
    Candidate,
    Merge,
    MergePolicy,
    Point,
    SplitRefusal,
    check_split,
    find_merge,
)
from services.dispatch.models import (
    APPROVED,
    HELD_STATUSES,
    PENDING,
    PROPOSED,
    REJECTED,
    RETURNED,
    AdmissionDecision,
    Case,
    CaseEvidence,
    CaseTip,
    LegalReview,
    ReferralRequest,
    TipText,
    TriageLabel,
)
from services.dispatch.queries import open_load, own_county, readable_case, summoned
from services.dispatch.routing import (
    ADMISSION_APPROVAL_QUEUE,
    ADMISSION_QUEUE,
    UNLOCATED,
    Assignment,
    NeedsTriage,
    lead_unit,
    least_loaded,
    pick_staff,
    route_from_lead,
    supporting_units,
    waiting_queue,
)
from services.dispatch.triage import Classification, Location, Triaged, classify, locate
from services.dispatch.whistles import WhistleFacts, automatic_whistle, judge, new_whistle
from services.runtime.auth import Principal
from services.runtime.clock import Clock
from services.runtime.outbox import stage
from services.runtime.retention import ERASED_TEXT
from services.runtime.settings import Settings
from services.runtime.uploads import StoredFile, not_stored

# The CloudEvents source of everything dispatch says.
SOURCE = "whistle/dispatch"
_CASES = Case.__table__  # type: ignore[attr-defined]
# The open cases a tip of the matter may join (merging.py decides which): the county's, opened
# within the merge window. Built once; the columns merging reads, not whole cases.
MERGE_CANDIDATES = select(
    _CASES.c.id,
    _CASES.c.status,
    _CASES.c.matter_code,
    _CASES.c.township_code,
    _CASES.c.grid_id,
    _CASES.c.lat,
    _CASES.c.lon,
    _CASES.c.created_at,
).where(
    # A tip never joins another county's case, however near.
    _CASES.c.county == bindparam("county"),
    _CASES.c.matter_code == bindparam("matter_code"),
    _CASES.c.created_at >= bindparam("since"),
    _CASES.c.status.in_(sorted(s.value for s in MERGEABLE_STATUSES)),
)

log = logging.getLogger(__name__)

# The role each capacity of the lifecycle is recorded as in the case's events.
ROLE_OF_ACTOR = {
    DISPATCHER: "dispatcher",
    UNIT: "unit_member",
    COUNTY: "county_supervisor",
    CITIZEN: CITIZEN,
}
SUPPORTING = "supporting_unit"  # acts on a joint operation it is not the lead of
# 县政府: approves or rejects what the county supervisor proposes for admission (准入).
GOVERNMENT = "county_government"
# 法制审核人员: approves or returns the penalty decisions on the 重大执法决定 list.
LEGAL_REVIEWER = "legal_reviewer"
# Who assigns beyond a township's own units: the county, in arbitration or by admission.
COUNTY_ROLES = frozenset({ROLE_OF_ACTOR[COUNTY], GOVERNMENT})

# Steps beyond the lifecycle's, offered to the township's dispatcher while the case is open.
WHISTLE, SPLIT = "whistle", "split"
# ... and to the county unit leading an assist matter (协助).
ASSISTANCE = "assistance"

# The steps whose event records only who took them, and when.
PLAIN_STEPS: dict[Action, type[CaseStep]] = {
    Action.ACCEPT: CaseAccepted,
    Action.START: CaseStarted,
    Action.CLOSE: CaseClosed,
}

RELOCATED = "群众补充位置后重新定位"


@dataclass(frozen=True)
class DispatchSettings:
    """How dispatch decides, from the service's settings."""

    confidence_threshold: float  # below it, a dispatcher decides the matter
    zone: ZoneInfo  # the county's: certificates are valid by its date
    merge: MergePolicy
    follow_up_window: timedelta = timedelta(days=3)  # 回访: before it, no close without one

    @classmethod
    def of(cls, settings: Settings) -> DispatchSettings:
        return cls(
            confidence_threshold=settings.triage_confidence_threshold,
            zone=ZoneInfo(settings.timezone),
            merge=MergePolicy(
                distance_m=settings.merge_distance_m,
                window=timedelta(hours=settings.merge_window_hours),
            ),
            follow_up_window=timedelta(days=settings.follow_up_days),
        )


@dataclass(frozen=True)
class Referral:
    """What a county department says when it refers a matter to a township (移送)."""

    department_code: str
    matter_code: str
    township_code: str
    facts: str
    grid_id: str | None = None
    place: str | None = None
    officer: str | None = None  # who referred it, if not the token's subject


@dataclass(frozen=True)
class ReferralKey:
    """An HTTP referral's ``Idempotency-Key``, and a digest of the body it came with."""

    key: str
    fingerprint: str


REFERRAL_CHANNEL = "referral"  # how the console tells a referred case's words from a tip's


# ---------------------------------------------------------------- who may act


def actors_of(principal: Principal, case: Case) -> frozenset[str]:
    """In which of the lifecycle's capacities the principal may act on this case."""
    actors = set()
    if "county_supervisor" in principal.roles:
        actors.add(COUNTY)
    if (
        "dispatcher" in principal.roles
        and case.township_code
        and principal.may_act_on("township", case.township_code)
    ):
        actors.add(DISPATCHER)
    if (
        "unit_member" in principal.roles
        and case.unit_id
        and principal.may_act_on("unit", case.unit_id)
    ):
        actors.add(UNIT)
    return frozenset(actors)


def _supports(principal: Principal, case: Case) -> bool:
    """联合执法: the principal is a member of one of the case's supporting units."""
    return "unit_member" in principal.roles and any(
        principal.may_act_on("unit", unit) for unit in case.supporting_units
    )


def _supporting_unit_of(principal: Principal, case: Case) -> str | None:
    """The supporting unit the principal acts for on the case, if not for its lead unit."""
    if case.unit_id is not None and principal.may_act_on("unit", case.unit_id):
        return None
    return next((u for u in case.supporting_units if principal.may_act_on("unit", u)), None)


def _asks_as_lead(principal: Principal, case: Case) -> bool:
    """协助 is asked by the lead unit's members, not by a supporting unit's."""
    return UNIT in actors_of(principal, case) and _supporting_unit_of(principal, case) is None


def may_ask_assistance(principal: Principal, case: Case, reference: ReferenceData) -> bool:
    """Whether the console offers 请求乡镇协助 (``request_assistance``) to the principal now."""
    item = reference.items.get(case.matter_code or "")
    lead = reference.units.get(case.unit_id or "")
    return (
        _asks_as_lead(principal, case)
        and case.status in HELD_STATUSES
        and assistance_refusal(item, lead, None, case.township_code) is None
    )


def may_add_evidence(principal: Principal, case: Case) -> bool:
    """Whoever may act on the case — its unit, a supporting unit, its dispatcher, the county —
    may upload evidence for its steps."""
    return bool(actors_of(principal, case)) or _supports(principal, case)


def permitted_actions(principal: Principal, case: Case) -> list[str]:
    """What the principal may do now: the lifecycle's steps, then whistle and split for the
    township's dispatcher while the case is open."""
    actors = actors_of(principal, case)
    status = CaseStatus(case.status)
    actions = [
        a.value for a in Action if isinstance(check(status, a, actors, case.rejections), Allowed)
    ]
    if DISPATCHER in actors and status is not CaseStatus.CLOSED:
        actions += [WHISTLE, SPLIT]
    return actions


async def find_case(
    session: AsyncSession, principal: Principal, case_id: UUID, *, for_update: bool = False
) -> Case:
    """The case, if the principal may read it; locked for the transaction with ``for_update``."""
    case = await readable_case(session, principal, case_id, for_update=for_update)
    # A case outside the principal's township or unit is answered like a missing one.
    if case is None:
        raise CaseNotFound(case_id)
    return case


def waiting_for_a_place(case: Case) -> bool:
    """The case waits for a dispatcher only because its tip could not be located (nobody
    has assigned it by hand since, which would have changed its rule)."""
    return case.status == CaseStatus.TRIAGE and case.routing.get("rule") == UNLOCATED


def _examine(tip: TipReceived, reference: ReferenceData, model: TriageModel | None) -> Triaged:
    return Triaged(
        classify(tip.text, tip.category_hint, reference, model),
        locate(tip.grid_id, tip.address, reference, tip.location),
    )


def _merge_lock_key(matter_code: str) -> int:
    """A stable 32-bit key for PostgreSQL's advisory lock on merging into one matter."""
    return zlib.crc32(f"dispatch.merge:{matter_code}".encode())


MERGE_LOCK = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))


StepEvent = Callable[[Case, dict[str, Any]], Awaitable[EventData]]
# What waits on a case for a second role's decision.
Held = TypeVar("Held", AdmissionDecision, LegalReview)


class CaseService:
    """The commands on dispatch's cases, within one transaction of ``session``."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        reference: ReferenceData,
        clock: Clock,
        settings: DispatchSettings,
        model: TriageModel | None = None,
        counties: Mapping[str, ReferenceData] | None = None,
    ) -> None:
        self._session = session
        # The county the service works in: the arriving event's, or the county of the case a
        # command acts on (_in_county_of); every county's, to switch to it.
        self._reference = reference
        self._counties = counties
        self._model = model
        self._clock = clock
        self._settings = settings

    # ------------------------------------------------------------ tips arriving

    async def receive(self, tip: TipReceived) -> None:
        """A tip joins an open case of the same matter nearby (merging.py) when routing may
        decide its matter and place; otherwise, or with no such case, it opens its own."""
        now = self._clock()
        triaged = _examine(tip, self._reference, self._model)
        item = triaged.classification.item
        routable = waiting_queue(triaged, self._settings.confidence_threshold) is None
        if routable and item is not None and self._settings.merge.enabled:
            merge = await self._open_duplicate(tip, triaged, item, now)
            if merge is not None:
                self._join(tip, triaged, item, merge, now)
                return
        await self._open(tip, now, triaged=triaged)

    async def supplement(self, supplement: TipSupplemented) -> None:
        """A place sent after the text (a WeChat location) locates a case that could not be
        located, which then goes on as a new tip would: routed and assigned, or queued in its
        township. A case already placed keeps its place (intake and the ledger keep the
        supplement); attachments alone change nothing here."""
        if supplement.location is None and not supplement.address:
            return
        case = await self._session.scalar(
            select(Case).where(Case.tip_id == supplement.tip_id).with_for_update()  # type: ignore[arg-type]
        )
        if case is None or not waiting_for_a_place(case):
            log.info(
                "tip %s: a place was supplied for %s; dispatch keeps the case as it is",
                supplement.tip_id,
                f"case {case.id} ({case.status})" if case else "a tip with no case of its own",
            )
            return
        said = await self._session.get(TipText, case.tip_id)
        if said is None:
            log.warning("tip %s: its text is not kept, so case %s stays", case.tip_id, case.id)
            return
        reference = self._reference
        triaged = Triaged(
            classify(said.text, None, reference, self._model),
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
        await self._route(case, triaged, explanation, now, cause)

    async def rated(self, rating: TipRated) -> None:
        """回访, on any channel. A dissatisfied citizen reopens the resolved or closed case, by
        the lifecycle's rules; any other rating of the case's latest resolution is its recorded
        follow-up, after which the case may close (lifecycle.closes_at)."""
        case = await self._session.get(Case, rating.case_id, with_for_update=True)
        if case is None:
            raise CaseNotFound(rating.case_id)
        if rating.tip_id != case.tip_id and await self._session.get(CaseTip, rating.tip_id) is None:
            raise TipNotOfCase(rating.tip_id, case.id)
        if rating.rating != "dissatisfied":
            # A rating of an earlier resolution (reopened and resolved again since) is not a
            # follow-up of this one.
            latest = case.resolved_at
            if case.status == CaseStatus.RESOLVED and (latest is None or rating.rated_at >= latest):
                case.followed_up_at = rating.rated_at
            return
        reason = f"群众不满意: {rating.comment}" if rating.comment else "群众不满意"
        self._reopen(case, frozenset({CITIZEN}), CITIZEN, reason)

    async def refer(
        self,
        actor: Principal,
        referral: Referral,
        referral_id: UUID | None = None,
        key: ReferralKey | None = None,
    ) -> tuple[Case, bool]:
        """移送: open a case for the township from a county department's referral, as a tip
        would open one, and route it under the authority rule. Only a matter the township may
        lead is referred (``judge_referral``); the department must be the caller's own. The
        referral's id (``referral_id`` if the department chose it, else a new one) stands as
        the case's tip; the same id again returns its case and opens nothing (and, with an
        HTTP ``key``, only if the body is the same: ReferralKeyReused otherwise). The facts
        are kept as the tip's words are. Returns the case, and whether this call opened it."""
        if not actor.may_act_on("dept", referral.department_code):
            raise NotPermitted(f"您不代表{referral.department_code}，不得以其名义移送。")
        # A department refers within its own county: its townships, its catalogue.
        self._in_county(own_county(actor))
        if referral_id is not None:
            opened = await self._session.scalar(
                select(Case).where(Case.tip_id == referral_id)  # type: ignore[arg-type]
            )
            if opened is not None:
                await self._same_referral(referral_id, key)
                return opened, False
        reference = self._reference
        department = reference.departments.get(referral.department_code)
        item = reference.items.get(referral.matter_code)
        township = reference.townships.get(referral.township_code)
        if department is None or item is None or township is None:
            raise ReferralRefused("移送须写明本县的县直部门、事项清单中的事项和乡镇（街道）。")
        verdict = judge_referral(item, township.code, reference.claims.get(township.code, ()))
        if not verdict.allowed:
            raise ReferralRefused(f"不予移送：{verdict.reason}", verdict.refusals)
        location = Location(township.code, None, None, (f"移送至{township.name}",))
        if referral.grid_id is not None:
            location = locate(referral.grid_id, None, reference)
            if location.township != township.code:
                raise ReferralRefused(f"网格 {referral.grid_id} 不在{township.name}。")
        now = self._clock()
        case_id = uuid7()
        referral_id = referral_id or case_id
        said = f"{department.name}移送：{item.name}（{verdict.grounds}）"
        triaged = Triaged(Classification(item, 1.0, (said,)), location)
        self._emit(
            case_id,
            CaseReferred(
                case_id=case_id,
                tip_id=referral_id,
                referral_id=referral_id,
                department_code=department.code,
                referred_by=referral.officer or actor.subject,
                matter_code=item.code,
                township_code=township.code,
                village_code=location.village,
                grid_id=location.grid,
                place=referral.place,
                facts=referral.facts,
                urgency=item.default_urgency.value,
                deadline_policy=item.deadline_policy,
                catalogue_version=reference.version,
                referred_at=now,
            ),
            now,
        )
        self._session.add(
            TipText(
                tip_id=referral_id,
                text=referral.facts,
                address=referral.place,
                channel=REFERRAL_CHANNEL,
                received_at=now,
            )
        )
        if key is not None:
            self._session.add(
                ReferralRequest(
                    referral_id=referral_id,
                    department_code=department.code,
                    idempotency_key=key.key,
                    fingerprint=key.fingerprint,
                    received_at=now,
                )
            )
        return await self._open_triaged(referral_id, None, triaged, now, case_id=case_id), True

    async def _same_referral(self, referral_id: UUID, key: ReferralKey | None) -> None:
        """A referral retried under its Idempotency-Key must repeat the body it was sent with."""
        if key is None:
            return
        kept = await self._session.get(ReferralRequest, referral_id)
        if kept is not None and kept.fingerprint != key.fingerprint:
            raise ReferralKeyReused(f"idempotency key {key.key!r} was used for another referral")

    async def _open(
        self,
        tip: TipReceived,
        now: datetime,
        *,
        case_id: UUID | None = None,
        triaged: Triaged | None = None,
    ) -> Case:
        """Open a case of its own for ``tip``: triage it (unless ``triaged`` already), route
        it, and stage ``whistle.case.opened`` and the assignment or the triage queue."""
        triaged = triaged or _examine(tip, self._reference, self._model)
        case = await self._open_triaged(tip.tip_id, tip.location, triaged, now, case_id=case_id)
        # A finding of a unit's inspection (channel inspection): the case says which task.
        case.inspection_task_id = tip.inspection_task_id
        return case

    async def _open_triaged(
        self,
        tip_id: UUID,
        point: GeoPoint | None,
        triaged: Triaged,
        now: datetime,
        *,
        case_id: UUID | None = None,
    ) -> Case:
        """Open the case of ``tip_id`` (a tip's, or a referral's) as ``triaged``, reported at
        ``point``: route it and stage ``whistle.case.opened`` and what routing decided."""
        reference = self._reference
        classification, location = triaged.classification, triaged.location
        item = classification.item
        urgency = item.default_urgency if item else Urgency.GENERAL
        case_id = case_id or uuid7()
        case = Case(
            id=case_id,
            county=reference.county.code,
            tip_id=tip_id,
            status=CaseStatus.TRIAGE.value,
            matter_code=item.code if item else None,
            township_code=location.township,
            village_code=location.village,
            grid_id=location.grid,
            lat=point.lat if point else None,
            lon=point.lon if point else None,
            urgency=urgency.value,
            catalogue_version=reference.version,
            routing={},
            created_at=now,
            updated_at=now,
        )
        explanation = [*location.explanation, *classification.explanation]
        opened = CaseOpened(
            case_id=case_id,
            tip_id=tip_id,
            matter_code=case.matter_code,
            matter_name=item.name if item else None,
            confidence=classification.confidence,
            township_code=location.township,
            village_code=location.village,
            grid_id=location.grid,
            urgency=urgency.value,
            catalogue_version=reference.version,
            explanation=explanation,
        )
        self._emit(case_id, opened, now)
        await self._route(case, triaged, explanation, now)
        # Added once routed, so that the open-load query does not flush it first: one insert.
        self._session.add(case)
        return case

    async def _route(
        self,
        case: Case,
        triaged: Triaged,
        explanation: list[str],
        now: datetime,
        cause: tuple[str, ...] = (),
    ) -> None:
        """Route the triaged case, or queue it for a dispatcher: set the case so and stage the
        assignment (and the automatic whistle) or the triage queue. ``explanation`` is how
        the case was triaged; the routing's reasons follow it. ``cause`` says why a case
        already opened is routed again, at the head of the event's explanation."""
        reference = self._reference
        item, location = triaged.classification.item, triaged.location
        outcome: Assignment | NeedsTriage | None
        outcome = waiting_queue(triaged, self._settings.confidence_threshold)
        if outcome is None:
            assert item is not None and location.township is not None
            # Only the leading unit's staff can be picked: their load is all routing reads.
            lead = lead_unit(item, location.township, reference)
            if isinstance(lead, NeedsTriage):
                outcome = lead
            else:
                outcome = route_from_lead(
                    lead,
                    item,
                    location.township,
                    location.village,
                    reference,
                    await open_load(self._session, lead.unit.staff),
                    self._today(now),
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
            self._act_for(case, item, outcome.unit)
            data = case.assignment(
                outcome.unit.kind.value,
                item,
                reference.version,
                outcome.rule,
                [*cause, *outcome.explanation],
            )
        self._emit(case.id, data, now)
        if isinstance(outcome, Assignment):
            self._whistle_if_beyond_the_township(case, outcome, now)

    def _whistle_if_beyond_the_township(
        self, case: Case, outcome: Assignment, now: datetime
    ) -> None:
        """A county-only or unclaimed matter went to the county: the whistle is blown for the
        township at once, so the department's 报到 clock starts with the case."""
        automatic = automatic_whistle(outcome.rule, outcome.unit)
        if automatic is None:
            return
        rules = self._reference.whistle_rules
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
        self._session.add(whistle)
        self._emit(case.id, blown, now)

    async def _open_duplicate(
        self, tip: TipReceived, triaged: Triaged, item: MatterItem, now: datetime
    ) -> Merge | None:
        policy = self._settings.merge
        # Two reports of one problem handled at once (another partition, another replica) must
        # not both open a case: decisions for one matter take turns until their commit.
        await self._session.execute(MERGE_LOCK, {"key": _merge_lock_key(item.code)})
        cases = await self._session.execute(
            MERGE_CANDIDATES,
            {
                "county": self._reference.county.code,
                "matter_code": item.code,
                "since": now - policy.window,
            },
        )
        candidates = [
            Candidate(
                case_id=case.id,
                status=case.status,
                matter_code=case.matter_code,
                township=case.township_code,
                grid_id=case.grid_id,
                point=Point(case.lat, case.lon)
                if case.lat is not None and case.lon is not None
                else None,
                opened_at=case.created_at,
            )
            for case in cases
        ]
        point = Point(tip.location.lat, tip.location.lon) if tip.location else None
        arriving = ArrivingTip(item.code, triaged.location.grid, point, triaged.location.township)
        return find_merge(arriving, candidates, now, policy)

    def _join(
        self, tip: TipReceived, triaged: Triaged, item: MatterItem, merge: Merge, now: datetime
    ) -> None:
        """The tip joins the open case: a link and an event; no case, assignment or deadline."""
        self._session.add(
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
            window_hours=self._settings.merge.window.total_seconds() / 3600,
            catalogue_version=self._reference.version,
            explanation=explanation,
        )
        self._emit(merge.case_id, merged, now)

    # ------------------------------------------------------------ the lifecycle

    async def step(self, actor: Principal, case_id: UUID, expected: int, action: Action) -> Case:
        """One of the :data:`PLAIN_STEPS` (accept, start, close); a close only after the
        case's 回访 (lifecycle.closes_at)."""
        model = PLAIN_STEPS[action]

        async def event(case: Case, fields: dict[str, Any]) -> EventData:
            if action is Action.CLOSE:
                # The step's own time: _take has just set it as the case's updated_at.
                follow_up = FollowUp(case.resolved_at, case.followed_up_at)
                not_before = closes_at(follow_up, case.updated_at, self._settings.follow_up_window)
                if not_before is not None:
                    raise ClosingBeforeFollowUp(not_before.astimezone(self._settings.zone))
            return model(**fields)

        return await self._act(actor, case_id, expected, action, event)

    async def assign(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        unit_id: str,
        staff_id: str | None = None,
        matter_code: str | None = None,
    ) -> Case:
        """A dispatcher assigns a case waiting in triage, or the county one waiting for
        arbitration (whose assignment is final); an out-of-list case waits for admission."""

        async def event(case: Case, step: dict[str, Any]) -> EventData:
            if case.queue in (ADMISSION_QUEUE, ADMISSION_APPROVAL_QUEUE):
                raise AdmissionRequired()
            rule = "arbitration" if case.rejections else "manual"
            admission = await self._admission_in_force(case)
            return await self._assign_by_hand(
                case, step, unit_id, staff_id, matter_code, rule, admission
            )

        return await self._act(actor, case_id, expected, Action.ASSIGN, event)

    async def reject(self, actor: Principal, case_id: UUID, expected: int, *, reason: str) -> Case:
        """退单: the unit sends the case back to its township's queue, or the second time to
        the county's arbitration."""

        async def event(case: Case, step: dict[str, Any]) -> EventData:
            case.rejections += 1
            if case.status == CaseStatus.ARBITRATION:
                case.queue = "arbitration"
            else:
                case.queue = f"township:{case.township_code}" if case.township_code else "county"
            case.unit_id = case.staff_id = case.acting = None
            return CaseRejected(**step, reason=reason, rejections=case.rejections, queue=case.queue)

        return await self._act(actor, case_id, expected, Action.REJECT, event)

    async def progress(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        note: str,
        evidence: Sequence[str] = (),
        point: GeoPoint | None = None,
    ) -> Case:
        """进展: what the unit (or a supporting unit) did, with the evidence stored for the
        case it cites, the officer's certificate and the place (field_record.py)."""

        async def event(case: Case, step: dict[str, Any]) -> EventData:
            ground = await self._on_the_ground(case, step, evidence, point)
            return CaseProgressRecorded(
                **step,
                **ground,
                note=note,
                evidence=list(evidence),
                supporting_unit_id=_supporting_unit_of(actor, case),
            )

        return await self._act(actor, case_id, expected, Action.PROGRESS, event)

    async def resolve(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        resolution: Literal["on_the_spot", "rectified", "penalised", "unsubstantiated"],
        note: str,
        rectification_due: date | None = None,
        evidence: Sequence[str] = (),
        penalty: Penalty | None = None,
        point: GeoPoint | None = None,
    ) -> Case:
        """办结. A penalty decided in an entrusting department's name must stay within the
        entrusted ceiling (refused otherwise, nothing kept); a penalty on the county's 重大执法决定
        list does not take effect yet: the case waits for legal review (待法制审核). Like progress,
        it cites only evidence stored for the case and records the officer's certificate and
        the place (field_record.py)."""

        async def event(case: Case, step: dict[str, Any]) -> EventData:
            ground = await self._on_the_ground(case, step, evidence, point)
            if resolution == "penalised" and penalty is not None:
                self._within_entrustment(case, penalty)
                major = major_decisions(penalty, self._reference.catalogue.major_decisions)
                if major:
                    return self._hold_for_review(case, step, ground, note, evidence, penalty, major)
            # A new resolution: the citizen's 回访 of it is still to come.
            case.resolved_at, case.followed_up_at = case.updated_at, None
            return CaseResolved(
                **step,
                **ground,
                resolution=resolution,
                note=note,
                rectification_due=rectification_due,
                evidence=list(evidence),
                penalty=penalty,
            )

        return await self._act(actor, case_id, expected, Action.RESOLVE, event)

    async def contact(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        contacted_at: datetime,
        method: ContactMethod,
        note: str | None = None,
    ) -> Case:
        """联系群众: the unit records when and how it contacted the citizen. A time before the
        case was opened, or still to come, is refused; 响应率 counts the earliest contact."""

        async def event(case: Case, step: dict[str, Any]) -> EventData:
            if contacted_at > case.updated_at or contacted_at < case.created_at:
                raise ContactRefused(case.created_at, case.updated_at)
            if case.contacted_at is None or contacted_at < case.contacted_at:
                case.contacted_at = contacted_at
            return CaseContacted(**step, contacted_at=contacted_at, method=method, note=note)

        return await self._act(actor, case_id, expected, Action.CONTACT, event)

    async def _on_the_ground(
        self,
        case: Case,
        step: dict[str, Any],
        evidence: Sequence[str],
        point: GeoPoint | None,
    ) -> dict[str, Any]:
        """What a step taken on the ground records besides who acted (``FieldStep``): the
        officer's certificate number checked valid on the step's date, the place and the time.
        Refused — nothing of the step kept — if it cites evidence not stored for the case, or
        if the officer may not act on the case's penalty matter without a valid 执法证."""
        stored = await stored_among(self._session, case.id, list(evidence))
        missing = not_stored(evidence, stored)
        if missing:
            raise UnknownEvidence(missing)
        reference = self._reference
        staff_id = step["actor"]
        officer = officer_record(
            staff_id,
            find_staff(reference.units.values(), staff_id),
            reference.items.get(case.matter_code or ""),
            self._today(case.updated_at),
        )
        if isinstance(officer, str):
            raise CertificateRequired(officer)
        return {
            "certificate_number": officer.certificate_number,
            **step_place(point, case.grid_id).record(),
            "acted_at": case.updated_at,
        }

    async def add_evidence(
        self, actor: Principal, case_id: UUID, stored: StoredFile
    ) -> tuple[CaseEvidence, bool]:
        """Record a stored file as evidence of the case, for whoever may act on it; whether
        this upload created the record (False: the same bytes were uploaded for it before)."""
        case = await find_case(self._session, actor, case_id)
        if not may_add_evidence(actor, case):
            raise NotPermitted("您可以查看本案，但不能为本案上传证据。")
        return await record_evidence(self._session, case.id, stored, actor.subject, self._clock())

    def _within_entrustment(self, case: Case, penalty: Penalty) -> None:
        """Refuse a penalty beyond the ceiling of the entrustment the case is handled under."""
        item = self._reference.items.get(case.matter_code or "")
        unit = self._reference.units.get(case.unit_id or "")
        if case.acting is None and item is not None and unit is not None:
            # Assigned before dispatch recorded in whose name (dispatch_0009): recorded now.
            self._act_for(case, item, unit)
        acting = case.acting and case.acting.get("acting_in_name_of")
        refusal = (
            entrustment_refusal(item, ActingFor.model_validate(acting), penalty)
            if item is not None and acting
            else None
        )
        if refusal is not None:
            assert item is not None and item.ceiling is not None
            raise BeyondEntrustment(refusal, item.ceiling)

    def _hold_for_review(
        self,
        case: Case,
        step: dict[str, Any],
        ground: dict[str, Any],
        note: str,
        evidence: Sequence[str],
        penalty: Penalty,
        major: list[str],
    ) -> CaseLegalReviewRequested:
        """The decision is kept, not yet in effect, and the case waits for a legal reviewer."""
        case.status = CaseStatus.LEGAL_REVIEW.value
        review = LegalReview(
            id=uuid7(),
            case_id=case.id,
            note=note,
            penalty=penalty.model_dump(mode="json"),
            evidence=list(evidence),
            major_decisions=major,
            requested_by=step["actor"],
            requested_role=step["actor_role"],
            requested_at=case.updated_at,
            certificate_number=ground["certificate_number"],
            grid_id=ground["grid_id"],
            point=ground["point"],
            status=PENDING,
        )
        self._session.add(review)
        return CaseLegalReviewRequested(
            **step,
            **ground,
            review_id=review.id,
            note=note,
            penalty=penalty,
            evidence=list(evidence),
            major_decisions=major,
        )

    async def decide_legal_review(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        approve: bool,
        opinion: str | None,
    ) -> Case:
        """法制审核: a legal reviewer approves the decision waiting on the case — it takes effect,
        the case is resolved (by who made the decision, naming the review) — or returns it with
        an opinion, and the unit has the case in progress again."""
        if LEGAL_REVIEWER not in actor.roles:
            raise NotPermitted(
                "重大执法决定须经法制审核：只有法制审核人员（legal_reviewer）可以审核。"
            )
        case, review, step, now = await self._second_step(
            actor,
            case_id,
            expected,
            LEGAL_REVIEWER,
            LegalReview,
            PENDING,
            lambda c: c.status == CaseStatus.LEGAL_REVIEW,
            NotAwaitingLegalReview("该案件没有待法制审核的处罚决定。"),
        )
        review.status = APPROVED if approve else RETURNED
        review.reviewed_by, review.reviewed_at, review.opinion = actor.subject, now, opinion
        decided = CaseLegalReviewDecided(
            **step,
            review_id=review.id,
            approved=approve,
            opinion=opinion,
            requested_by=review.requested_by,
            requested_at=review.requested_at,
        )
        self._emit(case.id, decided, now)
        if not approve:
            case.status = CaseStatus.IN_PROGRESS.value
            return case
        case.status = CaseStatus.RESOLVED.value
        # In effect now: the citizen's 回访 of this resolution is still to come.
        case.resolved_at, case.followed_up_at = now, None
        # The decision is the unit's: the resolution is recorded as theirs, in effect now.
        made = self._changed(case, review.requested_by, review.requested_role, now)
        resolved = CaseResolved(
            **made,
            # Recorded as the decision was made: by whom, with which certificate, where, when.
            certificate_number=review.certificate_number,
            grid_id=review.grid_id,
            point=review.point,
            acted_at=review.requested_at,
            resolution="penalised",
            note=review.note,
            evidence=review.evidence,
            penalty=Penalty.model_validate(review.penalty),
            legal_review_id=review.id,
        )
        self._emit(case.id, resolved, now)
        return case

    async def reopen(self, actor: Principal, case_id: UUID, expected: int, *, reason: str) -> Case:
        """A dispatcher or the county reopens a resolved or closed case."""
        case, actors = await self._acting(actor, case_id, expected, Action.REOPEN)
        self._reopen(case, actors, actor.subject, reason)
        return case

    def _reopen(self, case: Case, actors: frozenset[str], actor: str, reason: str) -> None:
        """The one reopening: by a dispatcher or the county (HTTP), or by a dissatisfied
        citizen (a rating)."""
        now = self._clock()
        step = self._take(case, Action.REOPEN, actors, actor, now)
        case.reopens += 1
        self._emit(case.id, CaseReopened(**step, reason=reason), now)

    async def _act(
        self, actor: Principal, case_id: UUID, expected: int, action: Action, event: StepEvent
    ) -> Case:
        """Take a lifecycle step on the case and stage what ``event`` makes of it."""
        case, actors = await self._acting(actor, case_id, expected, action)
        now = self._clock()
        step = self._take(case, action, actors, actor.subject, now)
        self._emit(case.id, await event(case, step), now)
        return case

    async def _acting(
        self, actor: Principal, case_id: UUID, expected: int, action: Action
    ) -> tuple[Case, frozenset[str]]:
        """The case, locked, and the capacities in which ``actor`` takes ``action`` on it."""
        case, actors = await self._to_act_on(actor, case_id, expected)
        if actors == {SUPPORTING}:
            # A supporting unit records its own progress on the joint operation, nothing else.
            if action is not Action.PROGRESS:
                raise NotPermitted("A supporting unit may only record progress.")
            actors = frozenset({UNIT})
        return case, actors

    async def _to_act_on(
        self, actor: Principal, case_id: UUID, expected: int
    ) -> tuple[Case, frozenset[str]]:
        """The case, locked, if ``actor`` may act on it at the version they saw; and as whom."""
        case = self._in_county_of(await find_case(self._session, actor, case_id, for_update=True))
        actors = actors_of(actor, case)
        if not actors and _supports(actor, case):
            actors = frozenset({SUPPORTING})
        if not actors:
            raise NotPermitted("You may see this case but not act on it.")
        if case.version != expected:
            raise StaleVersion(case.version)
        return case, actors

    async def _dispatchers_case(
        self, actor: Principal, case_id: UUID, expected: int, what: str
    ) -> Case:
        """The case, locked, for a step only the township's dispatcher takes (``what``)."""
        case, actors = await self._to_act_on(actor, case_id, expected)
        if DISPATCHER not in actors:
            raise NotPermitted(f"{what} is for the township's dispatcher.")
        return case

    def _take(
        self, case: Case, action: Action, actors: frozenset[str], actor: str, now: datetime
    ) -> dict[str, Any]:
        """The lifecycle's verdict applied: the case in its new state and version, and what
        the step's event records (who acted, in which role)."""
        status = CaseStatus(case.status)
        verdict = check(status, action, actors, case.rejections)
        if isinstance(verdict, Refused):
            raise TransitionRefused(verdict.reason, verdict.allowed)
        case.status = verdict.to.value
        return self._changed(case, actor, ROLE_OF_ACTOR[acting_as(actors, action, status)], now)

    @staticmethod
    def _changed(case: Case, actor: str, role: str, now: datetime) -> dict[str, Any]:
        """The case's next version, and what its event records of the step."""
        case.version += 1
        case.updated_at = now
        return case.step(actor, role)

    async def _assign_by_hand(
        self,
        case: Case,
        step: dict[str, Any],
        unit_id: str,
        staff_id: str | None,
        matter_code: str | None,
        rule: str,
        admission: AdmissionInForce | None,
    ) -> CaseAssigned:
        """Assign by hand (a dispatcher, arbitration, admission or a reassignment): the unit —
        a township's own, unless the county assigns — if the authority rule allows it
        (``admission`` the case's approved admission decision, if any), a person with a valid
        enforcement certificate (or the least loaded such), and for a joint operation the
        supporting units."""
        reference = self._reference
        unit = self._unit(unit_id)
        item = self._item(matter_code or case.matter_code)
        by_county = step["actor_role"] in COUNTY_ROLES
        # A service request may also go to a county-wide utility (the water company).
        county_wide_service = item.is_service and unit.township is None
        if not by_county and unit.township != case.township_code and not county_wide_service:
            raise AssignmentRefused(
                AssignmentRefusal.FOREIGN_UNIT, "A township dispatcher assigns to its own units."
            )
        today = self._today(self._clock())
        verdict = self._authorise(case, item, unit, admission, today)
        staff = self._named_staff(unit, staff_id, today, certified=not item.is_service)
        if staff_id is None:
            load = await open_load(self._session, unit.staff)
            staff = (
                least_loaded(unit, load)
                if item.is_service
                else pick_staff(unit, case.village_code, load, today, "", "").staff
            )
        supporting = supporting_units(item, unit, case.township_code or "", reference)
        await self._label(case, item.code, step)
        case.unit_id, case.staff_id = unit.id, staff.id if staff else None
        case.matter_code, case.queue = item.code, None
        case.supporting_units = [u.id for u in supporting]
        explanation = [f"{step['actor_role']} {step['actor']} 指派 {unit.name}", verdict.grounds]
        if supporting:
            names = "、".join(u.name for u in supporting)
            explanation.append(f"联合执法：{unit.name} 牵头，{names} 配合")
        case.routing = {
            "rule": rule,
            "explanation": [*case.routing.get("explanation", []), *explanation],
        }
        self._act_for(case, item, unit)
        return case.assignment(
            unit.kind.value,
            item,
            reference.version,
            rule,
            explanation,
            actor=step["actor"],
            actor_role=step["actor_role"],
        )

    def _act_for(self, case: Case, item: MatterItem, unit: Unit) -> None:
        """Record on the case in whose name ``unit`` handles ``item`` (enforcement.py); every
        later step of the case carries it."""
        if item.is_service:
            case.acting = None  # a service request is handled in no enforcement capacity
            return
        township = self._reference.townships.get(case.township_code or unit.township or "")
        capacity = acting_capacity(item, unit, township, self._reference.departments)
        case.acting = capacity.record()

    def _unit(self, unit_id: str) -> Unit:
        unit = self._reference.units.get(unit_id)
        if unit is None:
            raise AssignmentRefused(
                AssignmentRefusal.UNKNOWN_UNIT, f"There is no unit {unit_id!r}."
            )
        return unit

    def _item(self, matter_code: str | None) -> MatterItem:
        item = self._reference.items.get(matter_code or "")
        if item is None:
            raise AssignmentRefused(
                AssignmentRefusal.MATTER_NEEDED, "Give the matter_code from the catalogue."
            )
        return item

    @staticmethod
    def _named_staff(
        unit: Unit, staff_id: str | None, today: date, certified: bool = True
    ) -> Staff | None:
        """The person named to act, if any: one of the unit's, certified on ``today`` unless
        the case is a service request (``certified`` False), which needs no 执法证."""
        if staff_id is None:
            return None
        staff = next((s for s in unit.staff if s.id == staff_id), None)
        valid = staff is not None and staff.certificate and staff.certificate.valid_on(today)
        if staff is None or (certified and not valid):
            raise AssignmentRefused(
                AssignmentRefusal.STAFF_CANNOT_ENFORCE,
                f"{staff_id} is not in {unit.id} with a valid enforcement certificate.",
            )
        return staff

    def _authorise(
        self,
        case: Case,
        item: MatterItem,
        unit: Unit,
        admission: AdmissionInForce | None,
        today: date,
    ) -> Verdict:
        """The authority rule's verdict on giving the case's ``item`` to ``unit``; a refusal
        is raised, naming every rule that refused. A case no place was found for is judged in
        the township of the unit the county gives it to: giving it places it there."""
        township = case.township_code or unit.township
        verdict = judge_assignment(
            item,
            unit,
            township=township,
            claims=self._reference.claims.get(township or "", frozenset()),
            admission=admission,
            today=today,
        )
        if not verdict.allowed:
            raise AssignmentNotAuthorised(verdict.refusals)
        return verdict

    async def _admission_in_force(self, case: Case) -> AdmissionInForce | None:
        """The case's approved admission decision (准入), the latest if several."""
        decision = await self._session.scalar(
            select(AdmissionDecision)
            .where(
                AdmissionDecision.case_id == case.id,  # type: ignore[arg-type]
                AdmissionDecision.status == APPROVED,  # type: ignore[arg-type]
            )
            .order_by(AdmissionDecision.decided_at.desc())  # type: ignore[union-attr]
            .limit(1)
        )
        return _in_force(decision) if decision else None

    async def _label(self, case: Case, matter_code: str, step: dict[str, Any]) -> None:
        """A person chose the matter: the tip's words and that matter are a labelled example
        for the triage model, whether they confirm what triage suggested or correct it."""
        said = await self._session.get(TipText, case.tip_id)
        if said is None or said.text == ERASED_TEXT:
            return
        self._session.add(
            TriageLabel(
                id=uuid7(),
                tip_id=case.tip_id,
                case_id=case.id,
                text=said.text,
                matter_code=matter_code,
                suggested=case.matter_code,
                actor=step["actor"],
                actor_role=step["actor_role"],
                labelled_at=self._clock(),
            )
        )

    # ------------------------------------------------------------ beyond the lifecycle

    async def whistle(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        departments: Sequence[str],
        reason_code: str,
        reason: str,
    ) -> Case:
        """吹哨: the township's dispatcher summons county departments, if the county's rules
        allow it (every rule that refuses is named)."""
        case = await self._dispatchers_case(actor, case_id, expected, "Blowing the whistle")
        reference = self._reference
        item = reference.items.get(case.matter_code or "")
        facts = WhistleFacts(
            status=CaseStatus(case.status),
            urgency=Urgency(case.urgency),
            matter=item,
            claimed=item is not None
            and item.code in reference.claims.get(case.township_code or "", frozenset()),
            reopens=case.reopens,
            summoned=await summoned(self._session, case.id),
        )
        departments = list(dict.fromkeys(departments))
        verdict = judge(
            facts, departments, reason_code, reference.whistle_rules, reference.departments
        )
        if not verdict.allowed:
            raise WhistleRefused(verdict.refusals)
        now = self._clock()
        case.version += 1
        case.updated_at = now
        record, blown = new_whistle(
            uuid7(),
            case,
            departments,
            reason_code,
            reason,
            verdict.rule,
            automatic=False,
            actor=actor.subject,
            actor_role=ROLE_OF_ACTOR[DISPATCHER],
            at=now,
        )
        self._session.add(record)
        self._emit(case.id, blown, now)
        return case

    async def request_assistance(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        task: str,
        unit_id: str | None = None,
    ) -> Case:
        """协助: the county department's unit leading an assist matter asks the township to
        assist: ``unit_id`` (a township squad), else the township's enforcement team, becomes a
        supporting unit with ``task``; its clock is escalation's (assistance_response)."""
        case, _ = await self._to_act_on(actor, case_id, expected)
        if not _asks_as_lead(actor, case):
            raise NotPermitted("只有牵头办理本案的县直部门单位可请求乡镇协助。")
        if case.status not in HELD_STATUSES:
            raise AssistanceRefused("案件须处于已派单、已接单或处理中，方可请求乡镇协助。")
        reference = self._reference
        item = reference.items.get(case.matter_code or "")
        lead = reference.units.get(case.unit_id or "")
        assisting = self._assisting_unit(case, unit_id)
        refusal = assistance_refusal(item, lead, assisting, case.township_code)
        if refusal is not None:
            raise AssistanceRefused(refusal)
        assert item is not None and lead is not None and lead.department is not None
        if assisting.id in case.supporting_units:
            raise AssistanceRefused(f"{assisting.name}已是本案的协助单位。")
        now = self._clock()
        case.supporting_units = [*case.supporting_units, assisting.id]
        self._explain(case, f"{lead.name}请求{assisting.name}协助：{task}")
        step = self._changed(case, actor.subject, ROLE_OF_ACTOR[UNIT], now)
        requested = CaseAssistanceRequested(
            **step,
            assistance_id=uuid7(),
            department_code=lead.department,
            assisting_unit_id=assisting.id,
            task=task,
            urgency=case.urgency,  # type: ignore[arg-type]
            deadline_policy=item.deadline_policy,
        )
        self._emit(case.id, requested, now)
        return case

    def _assisting_unit(self, case: Case, unit_id: str | None) -> Unit:
        """The unit named, or the township's comprehensive enforcement team, which the
        township designates to assist (its 综合执法联动中心)."""
        if unit_id is not None:
            return self._unit(unit_id)
        team = next(
            (
                u
                for u in self._reference.units.values()
                if u.kind is UnitKind.TOWNSHIP_TEAM and u.township == case.township_code
            ),
            None,
        )
        if team is None:
            raise AssistanceRefused(
                "本案未定位到乡镇，或该乡镇没有综合行政执法队，请指定协助单位。"
            )
        return team

    async def split(
        self, actor: Principal, case_id: UUID, expected: int, *, tip_id: UUID, reason: str
    ) -> tuple[Case, UUID]:
        """The tip was not the same problem after all: it leaves the case and is triaged and
        routed as a case of its own (never merged again). Returns the case it left and the
        new case's id."""
        case = await self._dispatchers_case(actor, case_id, expected, "Splitting a tip off")
        link = await self._session.get(CaseTip, tip_id, with_for_update=True)
        joined = link is not None and link.case_id == case.id and link.left_at is None
        refusal = check_split(case.status, case.tip_id, tip_id, {tip_id} if joined else ())
        if refusal is not None or link is None:
            raise SplitRefused(refusal or SplitRefusal.NOT_MERGED, tip_id)
        now = self._clock()
        split_case_id = uuid7()
        link.left_at, link.split_case_id = now, split_case_id
        step = self._changed(case, actor.subject, ROLE_OF_ACTOR[DISPATCHER], now)
        event = CaseSplit(**step, split_tip_id=tip_id, split_case_id=split_case_id, reason=reason)
        self._emit(case.id, event, now)
        await self._open(TipReceived.model_validate(link.tip), now, case_id=split_case_id)
        return case, split_case_id

    async def propose_admission(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        matter_code: str,
        unit_id: str,
        staff_id: str | None,
        approving_body: str,
        document_no: str,
        reason: str,
    ) -> Case:
        """准入, first step: the county supervisor proposes that the case's township carry the
        out-of-list matter through ``unit_id``, on ``approving_body``'s document
        ``document_no``. The assignment is checked now as it would be made on approval; the
        case then waits for the county government (待批准)."""
        case, step, now = await self._admission(actor, case_id, expected)
        item, unit, today = self._item(matter_code), self._unit(unit_id), self._today(now)
        township = case.township_code or ""
        proposed = AdmissionInForce(item.code, township, approving_body, document_no)
        self._authorise(case, item, unit, proposed, today)
        self._named_staff(unit, staff_id, today)
        proposal = AdmissionDecision(
            id=uuid7(),
            case_id=case.id,
            matter_code=item.code,
            township_code=township,
            unit_id=unit.id,
            staff_id=staff_id,
            approving_body=approving_body,
            document_no=document_no,
            reason=reason,
            proposed_by=actor.subject,
            proposed_at=now,
            status=PROPOSED,
        )
        self._session.add(proposal)
        case.queue = ADMISSION_APPROVAL_QUEUE
        self._explain(
            case,
            f"准入提议：由{unit.name}办理{item.name}（{approving_body} {document_no}），"
            f"待县政府批准",
        )
        proposed_event = CaseAdmissionProposed(
            **step,
            proposal_id=proposal.id,
            matter_code=item.code,
            proposed_unit_id=unit.id,
            proposed_staff_id=staff_id,
            approving_body=approving_body,
            document_no=document_no,
            reason=reason,
        )
        self._emit(case.id, proposed_event, now)
        return case

    async def decide_admission(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        *,
        approve: bool,
        opinion: str | None,
    ) -> Case:
        """准入, second step: the county government approves the proposal, and the case is
        assigned to the proposed unit (rule ``admission``, through the authority rule with the
        decision now in force), or rejects it, and the case waits for the county supervisor
        again (待准入), who may propose anew or decline."""
        if GOVERNMENT not in actor.roles:
            raise NotPermitted("准入须经县政府批准：只有县政府（county_government）可以审批。")
        case, proposal, step, now = await self._second_step(
            actor,
            case_id,
            expected,
            GOVERNMENT,
            AdmissionDecision,
            PROPOSED,
            lambda c: c.status == CaseStatus.TRIAGE and c.queue == ADMISSION_APPROVAL_QUEUE,
            NotAwaitingAdmission("该案件没有待县政府审批的准入提议。"),
        )
        proposal.status = APPROVED if approve else REJECTED
        proposal.decided_by, proposal.decided_at, proposal.opinion = actor.subject, now, opinion
        decided = CaseAdmissionDecided(
            **step,
            proposal_id=proposal.id,
            approved=approve,
            matter_code=proposal.matter_code,
            approving_body=proposal.approving_body,
            document_no=proposal.document_no,
            opinion=opinion,
        )
        self._emit(case.id, decided, now)
        if not approve:
            case.queue = ADMISSION_QUEUE
            self._explain(case, f"县政府不予批准准入：{opinion or '未说明'}，退回待准入")
            return case
        case.status = CaseStatus.ASSIGNED.value
        assigned = await self._assign_by_hand(
            case,
            step,
            proposal.unit_id,
            proposal.staff_id,
            proposal.matter_code,
            "admission",
            _in_force(proposal),
        )
        self._emit(case.id, assigned, now)
        return case

    async def _second_step(
        self,
        actor: Principal,
        case_id: UUID,
        expected: int,
        role: str,
        record: type[Held],
        pending: str,
        waiting: Callable[[Case], bool],
        nothing_waits: DispatchError,
    ) -> tuple[Case, Held, dict[str, Any], datetime]:
        """The case, locked, with what waits on a second role's decision (an admission
        proposal, a penalty decision under legal review) — the ``record`` row in state
        ``pending``, locked too — at the case's next version, taken by ``actor`` as ``role``."""
        case = self._in_county_of(await find_case(self._session, actor, case_id, for_update=True))
        held = await self._session.scalar(
            select(record)
            .where(
                record.case_id == case.id,  # type: ignore[arg-type]
                record.status == pending,  # type: ignore[arg-type]
            )
            .with_for_update()
        )
        if not waiting(case) or held is None:
            raise nothing_waits
        if case.version != expected:
            raise StaleVersion(case.version)
        now = self._clock()
        return case, held, self._changed(case, actor.subject, role, now), now

    async def decline(self, actor: Principal, case_id: UUID, expected: int, *, reason: str) -> Case:
        """不予准入: the county declines an out-of-list case, which closes with the reason (told to
        the citizen)."""
        case, step, now = await self._admission(actor, case_id, expected)
        case.status, case.queue = CaseStatus.CLOSED.value, None
        case.routing = {**case.routing, "rule": "admission_declined"}
        self._explain(case, f"不予准入：{reason}")
        self._emit(case.id, CaseClosed(**step, reason=reason), now)
        return case

    async def _admission(
        self, actor: Principal, case_id: UUID, expected: int
    ) -> tuple[Case, dict[str, Any], datetime]:
        """The case waiting for the county supervisor's admission step (待准入: a proposal or a
        decline), at its next version."""
        case, actors = await self._to_act_on(actor, case_id, expected)
        if (
            COUNTY not in actors
            or case.status != CaseStatus.TRIAGE
            or case.queue != ADMISSION_QUEUE
        ):
            raise NotAwaitingAdmission("The case is not waiting for an admission decision.")
        now = self._clock()
        return case, self._changed(case, actor.subject, ROLE_OF_ACTOR[COUNTY], now), now

    # ------------------------------------------------------------ saying so

    @staticmethod
    def _explain(case: Case, line: str) -> None:
        """Add ``line`` to the case's routing explanation (the console shows its last line)."""
        case.routing = {**case.routing, "explanation": [*case.routing.get("explanation", []), line]}

    def _emit(self, case_id: UUID, data: EventData, now: datetime) -> None:
        """Stage the case's event, in the county the service works in: it leaves when the
        transaction commits."""
        county = self._reference.county.code
        stage(self._session, CASES, new_event(SOURCE, str(case_id), data, now, county))

    def _in_county_of(self, case: Case) -> Case:
        """Work in the county of ``case``, the one case a command acts on: its units, claims
        and catalogue are that county's reference data."""
        self._in_county(case.county)
        return case

    def _in_county(self, county: str | None) -> None:
        if self._counties is not None and county is not None and county in self._counties:
            self._reference = self._counties[county]

    def _today(self, now: datetime) -> date:
        """The county's date: routing's certificates are valid by it."""
        return now.astimezone(self._settings.zone).date()


def _in_force(decision: AdmissionDecision) -> AdmissionInForce:
    return AdmissionInForce(
        decision.matter_code, decision.township_code, decision.approving_body, decision.document_no
    )
