"""Typed payloads of every event Whistle publishes. Additive changes only within a ``.v1`` topic."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.cases import PenaltyKind
from contracts.envelope import PERSONAL, EventData

# "inspection": a finding of a unit's own inspection task (综合查一次, 定岗巡查), issue #15 item 6.
Channel = Literal["web", "open311", "wechat", "hotline", "grid", "inspection"]
Urgency = Literal["emergency", "utilities", "general", "complex"]


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class ContactRef(BaseModel):
    """What events may say about a citizen's contact: never the number itself."""

    model_config = ConfigDict(extra="forbid")
    masked_phone: str | None = Field(
        default=None,
        description="no longer sent (issue #20: no consumer needs it); kept so that events "
        "published before still validate",
        examples=[None],
    )
    phone_hash: str | None = Field(default=None, description="keyed hash, to spot repeat callers")


class TipReceived(EventData):
    """A tip was accepted and stored by intake. Subject and Kafka key: the tip id."""

    event_type = "whistle.tip.received"

    tip_id: UUID
    tracking_no: str
    channel: Channel
    external_ref: str | None = None
    text: str = Field(min_length=1, max_length=4000, json_schema_extra=PERSONAL)
    location: GeoPoint | None = Field(default=None, json_schema_extra=PERSONAL)
    address: str | None = Field(default=None, json_schema_extra=PERSONAL)
    grid_id: str | None = None
    category_hint: str | None = None
    contact: ContactRef | None = Field(default=None, json_schema_extra=PERSONAL)
    anonymous: bool = False
    attachments: list[str] = Field(default_factory=list, description="SHA-256 of each attachment")
    resolved_on_spot: bool = False
    resolution_note: str | None = Field(
        default=None, description="what was done on the spot", json_schema_extra=PERSONAL
    )
    urgency_hint: Urgency | None = Field(default=None, description="the hotline operator's call")
    inspection_task_id: UUID | None = Field(
        default=None, description="channel inspection: the inspection task that found it"
    )
    received_at: AwareDatetime


class TipSupplemented(EventData):
    """The citizen added to a tip already accepted (e.g. a WeChat photo or location sent after
    the text). Subject and Kafka key: the tip id."""

    event_type = "whistle.tip.supplemented"

    tip_id: UUID
    channel: Channel
    external_ref: str | None = Field(default=None, description="the channel's message id")
    attachments: list[str] = Field(
        default_factory=list, description="SHA-256 of each stored file, or the channel's media id"
    )
    location: GeoPoint | None = Field(default=None, json_schema_extra=PERSONAL)
    address: str | None = Field(default=None, json_schema_extra=PERSONAL)
    text: str | None = Field(default=None, max_length=4000, json_schema_extra=PERSONAL)
    supplemented_at: AwareDatetime


class TipRated(EventData):
    """回访: the citizen rated how their resolved case was handled. A dissatisfied rating
    reopens the case. Subject and Kafka key: the tip id."""

    event_type = "whistle.tip.rated"

    tip_id: UUID
    case_id: UUID
    rating: Rating
    comment: str | None = Field(default=None, max_length=1000, json_schema_extra=PERSONAL)
    channel: Channel = Field(
        description="how the 回访 was taken: the citizen page (web), a WeChat reply (wechat), "
        "a 12345 operator's follow-up call (hotline)"
    )
    rated_at: AwareDatetime
    recorded_by: str | None = Field(
        default=None, description="the hotline operator who recorded the call's answer"
    )


class TipFollowUpUnreachable(EventData):
    """回访 attempted and failed: a 12345 operator called the citizen about their resolved case
    and could not reach them. Not a rating (满意率 does not count it); the case's follow-up
    window still runs. Subject and Kafka key: the tip id."""

    event_type = "whistle.tip.follow_up_unreachable"

    tip_id: UUID
    case_id: UUID
    channel: Channel
    call_id: str = Field(min_length=1, max_length=64, description="the telephony system's call id")
    recorded_by: str = Field(description="the hotline operator")
    attempted_at: AwareDatetime


class PersonalDataErased(EventData):
    """Intake, which owns the tip, erased its citizen's personal data — when its retention ran
    out, or on request (``whistle erase``). Dispatch erases its copies at once; the ledger
    destroys the tip's key, so that the personal fields sealed in its entries can no longer be
    read, while every entry and proof stays. Subject and Kafka key: the tip id."""

    event_type = "whistle.personal_data.erased"

    tip_id: UUID
    tracking_no: str
    reason: Literal["retention", "request"]
    legal_basis: str = Field(min_length=1, max_length=500, description="the rule it was erased by")
    erased_at: AwareDatetime
    erased_by: str = Field(
        description="the staff member's subject, or whistle/intake for the retention job"
    )


class CaseOpened(EventData):
    """Dispatch opened a case for a tip and recorded how it triaged it."""

    event_type = "whistle.case.opened"

    case_id: UUID
    tip_id: UUID
    matter_code: str | None
    matter_name: str | None = None
    confidence: float = Field(ge=0, le=1)
    township_code: str | None
    village_code: str | None = None
    grid_id: str | None = None
    urgency: Urgency
    catalogue_version: str
    explanation: list[str]


class ActingFor(BaseModel):
    """In whose name a case is handled: the township for its statutory, devolved (赋权) and
    admitted matters, the county department for its own; for an entrusted (委托) matter the
    entrusting department, with whose legal documents the township acts."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["township", "department"]
    code: str = Field(description="the township's or the department's code")
    name: str
    entrusted: bool = Field(
        default=False, description="acting in the department's name by entrustment (委托)"
    )


class Penalty(BaseModel):
    """What a penalty decision imposes: its kinds (行政处罚法 art. 9) and, with a fine, the
    amount in yuan."""

    model_config = ConfigDict(extra="forbid")
    kinds: list[PenaltyKind] = Field(min_length=1, max_length=len(PenaltyKind))
    fine_yuan: int | None = Field(default=None, ge=1, description="罚款金额（元）, with a fine")

    @model_validator(mode="after")
    def _an_amount_with_a_fine(self) -> Penalty:
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError("each penalty kind once")
        if (PenaltyKind.FINE in self.kinds) != (self.fine_yuan is not None):
            raise ValueError("fine_yuan is given with a fine, and only with a fine")
        return self


class CaseReferred(EventData):
    """移送: a county department found a matter that belongs to a township and referred it
    ("及时移送乡镇(街道)"). Dispatch opens a case for the township from it, as from a tip
    (``whistle.case.opened`` follows, then the assignment by the authority rule); the
    referral's ``referral_id`` stands as the case's ``tip_id``. Escalation starts the
    referral's own clock: the township accepts within the policy's first-response time.
    Subject and Kafka key: the case id."""

    event_type = "whistle.case.referred"

    case_id: UUID
    tip_id: UUID = Field(description="the referral's id, standing for the case's tip")
    referral_id: UUID
    department_code: str = Field(description="the referring county department")
    referred_by: str = Field(description="the department officer's subject")
    matter_code: str
    township_code: str
    village_code: str | None = None
    grid_id: str | None = None
    place: str | None = Field(default=None, max_length=500, description="where, in words")
    facts: str = Field(min_length=1, max_length=4000, description="what the department found")
    urgency: Urgency
    deadline_policy: str
    catalogue_version: str
    referred_at: AwareDatetime


class CaseTriageRequired(EventData):
    """The case waits in a dispatcher's queue: routing could not decide on its own."""

    event_type = "whistle.case.triage_required"

    case_id: UUID
    tip_id: UUID
    queue: str = Field(description="'county' or 'township:<code>'")
    reason: str
    catalogue_version: str


class CaseAssigned(EventData):
    """The case was assigned to the unit that holds the power to act."""

    event_type = "whistle.case.assigned"

    case_id: UUID
    tip_id: UUID
    unit_id: str
    unit_kind: str
    township_code: str | None
    staff_id: str | None
    matter_code: str
    authority: str
    urgency: Urgency
    deadline_policy: str
    catalogue_version: str
    rule: str = Field(description="the routing rule that decided, or 'manual' / 'arbitration'")
    explanation: list[str]
    actor: str | None = Field(default=None, description="who assigned by hand, if anyone")
    actor_role: str | None = None
    supporting_units: list[str] = Field(
        default_factory=list,
        description="联合执法: units of the supporting departments acting with the lead unit",
    )
    acting_in_name_of: ActingFor | None = None
    legal_basis: str | None = Field(default=None, description="the catalogue item's legal basis")
    document_type: str | None = Field(default=None, description="whose legal documents are used")


Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class CaseStep(EventData):
    """What every lifecycle step records: the case, who acted in which role, and the case's
    version after the step (full-process recording, 全过程记录)."""

    case_id: UUID
    tip_id: UUID
    actor: str = Field(description="the acting principal's subject (staff or account id)")
    actor_role: str
    version: int = Field(ge=1)
    township_code: str | None
    unit_id: str | None
    acting_in_name_of: ActingFor | None = Field(
        default=None, description="in whose name the case is handled, once it is assigned"
    )
    legal_basis: str | None = Field(default=None, description="the catalogue item's legal basis")
    document_type: str | None = Field(default=None, description="whose legal documents are used")


class FieldStep(CaseStep):
    """A step taken on the ground (progress, a resolution, a penalty decision held for legal
    review): besides who acted, the officer's 执法证 number checked valid on the step's date,
    where they acted and when ("执法证据有留存", 全过程记录). Its evidence, if any, names files
    stored for the case."""

    certificate_number: str | None = Field(
        default=None,
        description="the actor's 执法证 number, valid on the step's date; none on a service "
        "request, or by an actor with none on a matter that is not a penalty",
    )
    grid_id: str | None = Field(default=None, description="the grid where the step was taken")
    point: GeoPoint | None = Field(
        default=None,
        description="where the officer acted, if they gave it (WGS 84)",
        json_schema_extra=PERSONAL,
    )
    acted_at: AwareDatetime | None = Field(
        default=None,
        description="when the officer acted: the event's time, except for a decision that "
        "took effect later (after legal review)",
    )


class CaseAccepted(CaseStep):
    event_type = "whistle.case.accepted"


class CaseRejected(CaseStep):
    """退单: the unit sent the case back; the second time it goes to county arbitration."""

    event_type = "whistle.case.rejected"
    reason: str
    rejections: int = Field(ge=1)
    queue: str = Field(description="'township:<code>' or 'arbitration'")


class CaseStarted(CaseStep):
    event_type = "whistle.case.started"


class CaseProgressRecorded(FieldStep):
    event_type = "whistle.case.progress_recorded"
    note: str
    evidence: list[Sha256] = Field(default_factory=list, description="SHA-256 of each file")
    supporting_unit_id: str | None = Field(
        default=None,
        description="联合执法/协助: the supporting unit whose member recorded it (not the lead)",
    )


class CaseAssistanceRequested(CaseStep):
    """协助: the county department's unit leading an assist matter asks the township to assist
    ("镇政府应指定综合执法联动中心积极协助"): the township's unit (its enforcement team, or a
    named squad) becomes a supporting unit of the case with its own ``task``. Escalation
    starts its clock (``assistance_response``, the policy's first-response time), stopped by
    the assisting unit's first recorded progress."""

    event_type = "whistle.case.assistance_requested"
    assistance_id: UUID
    department_code: str = Field(description="the department leading the case")
    assisting_unit_id: str
    task: str = Field(min_length=1, max_length=2000)
    urgency: Urgency
    deadline_policy: str


class CaseResolved(FieldStep):
    event_type = "whistle.case.resolved"
    resolution: Literal["on_the_spot", "rectified", "penalised", "unsubstantiated"]
    note: str
    rectification_due: date | None = None
    evidence: list[Sha256] = Field(default_factory=list)
    penalty: Penalty | None = Field(default=None, description="what a penalised resolution imposes")
    legal_review_id: UUID | None = Field(
        default=None,
        description="the legal review (法制审核) that approved it, for a major decision; the "
        "actor is then who made the decision, the reviewer is in legal_review_decided",
    )


class CaseClosed(CaseStep):
    event_type = "whistle.case.closed"
    reason: str | None = Field(
        default=None, description="why, when closed without being resolved (准入 declined)"
    )


ContactMethod = Literal["phone", "visit", "sms", "wechat"]


class CaseContacted(CaseStep):
    """联系群众: the acting unit contacted the citizen about the case (when and how). 响应率
    counts a case whose citizen was first contacted by its first-response deadline."""

    event_type = "whistle.case.contacted"
    contacted_at: AwareDatetime = Field(description="when the unit contacted the citizen")
    method: ContactMethod
    note: str | None = Field(default=None, max_length=500)


class CaseReopened(CaseStep):
    event_type = "whistle.case.reopened"
    reason: str


class CaseAdmissionProposed(CaseStep):
    """准入, first step: the county supervisor proposes that the case's township carry an
    out-of-list matter, naming the unit to act and the approving body and document number the
    decision rests on. The case waits for the county government (待批准)."""

    event_type = "whistle.case.admission_proposed"
    proposal_id: UUID
    matter_code: str
    proposed_unit_id: str
    proposed_staff_id: str | None = None
    approving_body: str = Field(description="批准机关, e.g. 县人民政府")
    document_no: str = Field(description="批准文号")
    reason: str


class CaseAdmissionDecided(CaseStep):
    """准入, second step: the county government approves the proposal (the case is then
    assigned to the proposed unit, ``whistle.case.assigned`` with rule ``admission``) or
    rejects it (the case waits for the county supervisor again, 待准入)."""

    event_type = "whistle.case.admission_decided"
    proposal_id: UUID
    approved: bool
    matter_code: str
    approving_body: str
    document_no: str
    opinion: str | None = None


class CaseLegalReviewRequested(FieldStep):
    """法制审核: a penalised resolution on the county's 重大执法决定 list does not take effect; it
    waits for a legal reviewer (待法制审核). The actor is the unit member who made it."""

    event_type = "whistle.case.legal_review_requested"
    review_id: UUID
    resolution: Literal["penalised"] = "penalised"
    note: str
    penalty: Penalty
    evidence: list[Sha256] = Field(default_factory=list)
    major_decisions: list[str] = Field(
        min_length=1, description="the entries of the 重大执法决定 list it matches"
    )


class CaseLegalReviewDecided(CaseStep):
    """法制审核, decided: the legal reviewer (the actor) approves — the resolution then takes
    effect, ``whistle.case.resolved`` follows — or returns it with an opinion, and the case is
    in progress again."""

    event_type = "whistle.case.legal_review_decided"
    review_id: UUID
    approved: bool
    opinion: str | None = Field(default=None, description="审核意见; always given on a return")
    requested_by: str
    requested_at: AwareDatetime


class CaseMerged(EventData):
    """A near-duplicate tip joined an open case of the same matter (same grid, or within the
    merge distance, inside the merge window) instead of opening a case of its own."""

    event_type = "whistle.case.merged"

    case_id: UUID = Field(description="the open case the tip joined")
    tip_id: UUID = Field(description="the tip that joined it")
    matter_code: str
    rule: Literal["same_grid", "within_distance"]
    distance_m: float | None = Field(default=None, ge=0)
    window_hours: float = Field(gt=0)
    catalogue_version: str
    explanation: list[str]


class CaseSplit(CaseStep):
    """A dispatcher split a merged tip back out of a case; it is triaged as a new case
    (``split_case_id``), which follows with its own ``whistle.case.opened``."""

    event_type = "whistle.case.split"
    split_tip_id: UUID
    split_case_id: UUID
    reason: str


class WhistleBlown(CaseStep):
    """吹哨: the township summons one or more county departments for a case, with a reason
    code checked against the county's eligibility rules (两吹两不吹), or automatically when the
    matter is county-only or not claimed by the township."""

    event_type = "whistle.case.whistle_blown"
    whistle_id: UUID
    departments: list[str] = Field(min_length=1, description="codes of the summoned departments")
    reason_code: str
    reason: str
    automatic: bool = False
    rule: str = Field(description="the eligibility rule that allowed it")
    matter_code: str | None = None
    urgency: Urgency


ClockKind = Literal[
    "first_response",
    "resolution",
    "whistle_receipt",
    "whistle_reply",
    "referral_acceptance",
    "assistance_response",
    "meeting_decision",
    "legal_review",
]
"""A case's own clocks, a summoned department's clocks under the whistle protocol, and a
referred case's acceptance by the township (移送, stopped by ``whistle.case.accepted``) and the
township's response to a department's request for assistance (协助, stopped by the assisting
unit's first progress); and a joint meeting's decision (联席会议议定事项), due on the date the
meeting set, stopped by its owner's report that it is done; and a penalty decision's legal
review (法制审核, started by ``whistle.case.legal_review_requested``, stopped by
``whistle.case.legal_review_decided``; each request a new round)."""

Rating = Literal["satisfied", "basically_satisfied", "dissatisfied"]


class Deadline(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: ClockKind
    due_at: AwareDatetime
    warn_at: AwareDatetime
    provisional_reason: str | None = Field(
        default=None, description="why the due time is provisional (a year without a calendar)"
    )
    round: int = Field(default=1, ge=1, description="2 and up: a clock restarted by a reopening")


class DeadlinesSet(EventData):
    """Escalation froze a deadline policy onto the case and started its clocks."""

    event_type = "whistle.deadlines.set"

    case_id: UUID
    policy_id: str
    urgency: Urgency
    deadlines: list[Deadline] = Field(min_length=1)


class DeadlineStopped(EventData):
    """A clock stopped: the case was accepted (first response) or resolved (resolution); a
    summoned department's clock by its receipt (报到) or reply, or lapsed by the case's closing."""

    event_type = "whistle.deadline.stopped"

    case_id: UUID
    kind: ClockKind
    round: int = Field(ge=1)
    due_at: AwareDatetime
    stopped_at: AwareDatetime
    on_time: bool
    late_by_seconds: int = Field(ge=0)
    stopped_by: str = Field(description="the case event that stopped it")
    whistle_id: UUID | None = Field(default=None, description="for a whistle clock")
    department_code: str | None = Field(
        default=None, description="for a whistle clock; for a decision owned by a department"
    )
    decision_id: UUID | None = Field(
        default=None, description="for a joint meeting's decision (联席会议议定事项)"
    )
    lapsed: bool = Field(
        default=False,
        description=(
            "the clock ended without the answer it waited for: a whistle clock whose case was "
            "closed before the department reported in or replied; on_time is then false and "
            "late_by_seconds how long past due the case closed (0 if before)"
        ),
    )
    premature_steps: list[str] = Field(
        default_factory=list,
        description=(
            "ids of the clock's ladder events that fired although the clock had stopped before "
            "they fell due (the stopping event reached escalation late): to be discounted"
        ),
    )


class LadderStep(EventData):
    """A step of a clock's escalation ladder, fired by escalation's scheduler."""

    case_id: UUID
    kind: ClockKind
    round: int = Field(ge=1)
    due_at: AwareDatetime = Field(description="the clock's deadline")
    scheduled_for: AwareDatetime = Field(description="when the policy put this step")
    fired_at: AwareDatetime = Field(description="when the scheduler fired it")
    late_by_seconds: int = Field(
        ge=0, description="how much later than scheduled it fired (e.g. after downtime)"
    )
    policy_id: str
    whistle_id: UUID | None = Field(default=None, description="for a whistle clock")
    department_code: str | None = Field(
        default=None,
        description="the summoned department, for a whistle clock; the owner department, for "
        "a joint meeting's decision",
    )
    decision_id: UUID | None = Field(
        default=None, description="for a joint meeting's decision (联席会议议定事项)"
    )


class DeadlineWarning(LadderStep):
    """A running clock reached its warning point (a fraction of its time, from the policy)."""

    event_type = "whistle.deadline.warning"


class DeadlineOverdue(LadderStep):
    """A running clock reached its deadline without being stopped."""

    event_type = "whistle.deadline.overdue"


class CaseChased(LadderStep):
    """催办: the clock is still running the policy's chase delay after its deadline."""

    event_type = "whistle.case.chased"


class CaseSupervised(LadderStep):
    """督办: still running the policy's supervision delay after the chase; the county
    supervises, and the case goes on the leadership stream."""

    event_type = "whistle.case.supervised"


class LeadershipNotified(LadderStep):
    """A supervised (督办) case on the county leadership stream (``escalation.leadership.v1``).

    Staged with the ``whistle.case.supervised`` event it follows, in the same transaction.
    """

    event_type = "whistle.leadership.notified"

    supervision_event_id: str = Field(description="id of the whistle.case.supervised event")


class ExtensionRequested(EventData):
    """延期: the acting unit asked for more time on a running clock."""

    event_type = "whistle.deadline.extension_requested"

    case_id: UUID
    request_id: UUID
    kind: ClockKind
    round: int = Field(ge=1)
    due_at: AwareDatetime = Field(description="the deadline in force")
    requested_due_at: AwareDatetime
    reason: str
    requested_by: str
    requested_by_role: str


class ExtensionDecided(EventData):
    """An extension request was approved (the clock moves to ``new_due_at`` and its ladder is
    rescheduled) or refused."""

    event_type = "whistle.deadline.extension_decided"

    case_id: UUID
    request_id: UUID
    kind: ClockKind
    round: int = Field(ge=1)
    approved: bool
    old_due_at: AwareDatetime
    new_due_at: AwareDatetime | None = None
    note: str | None = None
    decided_by: str
    decided_by_role: str
    whistle_id: UUID | None = Field(
        default=None,
        description=(
            "for a summoned department's reply clock moved with the case's resolution clock "
            "(same request_id): it replies within the case's resolution deadline"
        ),
    )
    department_code: str | None = Field(default=None, description="with whistle_id")


class DeadlineRecomputed(EventData):
    """A provisional deadline (counted Monday to Friday in a year the business calendar lacked)
    was counted again, under the policy frozen onto the case, once the calendar gained that
    year; its pending ladder step was rescheduled with it. A summoned department's clock names
    the whistle and department, and a copy goes on the department's topic."""

    event_type = "whistle.deadline.recomputed"

    case_id: UUID
    kind: ClockKind
    round: int = Field(ge=1)
    old_due_at: AwareDatetime
    due_at: AwareDatetime
    warn_at: AwareDatetime
    calendar_version: str = Field(description="the calendar it was counted on this time")
    provisional_reason: str = Field(description="why the old due time was provisional")
    whistle_id: UUID | None = Field(default=None, description="for a whistle clock")
    department_code: str | None = Field(default=None, description="for a whistle clock")


class WhistleNotified(EventData):
    """A summoned department's notice on its own topic in the case's county
    (``escalation.dept.<code>.v1``, ``escalation.dept.<county>.<code>.v1`` outside the default
    county), with the deadlines for its receipt (报到) and its reply."""

    event_type = "whistle.whistle.notified"

    case_id: UUID
    whistle_id: UUID
    department_code: str
    township_code: str | None
    matter_code: str | None
    reason_code: str
    reason: str
    urgency: Urgency
    receipt_due_at: AwareDatetime
    reply_due_at: AwareDatetime
    policy_id: str


class ReferralSubmitted(EventData):
    """移送 from a county department's own system, produced onto ``dispatch.referrals.v1`` with
    the department's token (as ``POST /v1/referrals``). ``referral_id`` is the department's
    own id for it, chosen once: a resubmission with the same id opens nothing more. Subject
    and Kafka key: the referral id."""

    event_type = "whistle.referral.submitted"

    referral_id: UUID
    department_code: str
    matter_code: str
    township_code: str
    grid_id: str | None = None
    place: str | None = Field(default=None, max_length=500)
    facts: str = Field(min_length=1, max_length=4000)
    officer: str | None = Field(default=None, max_length=200)


class WhistleReceiptSubmitted(EventData):
    """报到 from a department's own system, produced onto ``escalation.whistles.v1``."""

    event_type = "whistle.whistle.receipt_submitted"

    case_id: UUID
    whistle_id: UUID
    department_code: str
    receipt_no: str = Field(min_length=1, max_length=64)
    officer: str | None = None


class WhistleReplySubmitted(EventData):
    """A department's reply with the result, from its own system (``escalation.whistles.v1``)."""

    event_type = "whistle.whistle.reply_submitted"

    case_id: UUID
    whistle_id: UUID
    department_code: str
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(default_factory=list)
    officer: str | None = None


class WhistleReported(EventData):
    """报到 recorded: the department registered the case and issued its receipt (回执)."""

    event_type = "whistle.whistle.reported"

    case_id: UUID
    whistle_id: UUID
    department_code: str
    receipt_no: str
    reported_at: AwareDatetime
    due_at: AwareDatetime
    on_time: bool
    latency_seconds: int = Field(ge=0, description="from the notice to the receipt")
    via: Literal["http", "kafka"]
    actor: str | None = None


class WhistleReplied(EventData):
    """The department's reply with the result, recorded against its reply deadline."""

    event_type = "whistle.whistle.replied"

    case_id: UUID
    whistle_id: UUID
    department_code: str
    result: str
    evidence: list[Sha256] = Field(default_factory=list)
    replied_at: AwareDatetime
    due_at: AwareDatetime
    on_time: bool
    via: Literal["http", "kafka"]
    actor: str | None = None


# 考核 grades, as the assessment regulations name them: 优秀, 称职, 基本称职, 不称职.
AssessmentGrade = Literal["excellent", "competent", "basically_competent", "incompetent"]


class StaffAssessed(EventData):
    """双重考核: a township's assessment opinion of one seconded officer for one period
    ("派驻人员的平时考核、绩效考核由乡镇(街道)…出具考核意见并盖章"). A later opinion for the same
    officer and period replaces the earlier one."""

    event_type = "whistle.staff.assessed"

    assessment_id: UUID
    staff_id: str
    unit_id: str = Field(description="the seconded squad the officer serves in")
    department_code: str | None = Field(description="the department that seconded them")
    township_code: str
    period: str = Field(description="the period assessed: 2026-12, 2026-Q4 or 2026")
    grade: AssessmentGrade
    opinion: str = Field(description="考核意见, in the township's words")
    seal: str = Field(description="盖章: the township government in whose name it is sealed")
    assessed_by: str = Field(description="the township leader's subject")
    assessed_at: AwareDatetime


InspectionKind = Literal["joint", "patrol"]


class InspectionTaskPlanned(EventData):
    """A unit's inspection task fell due: its township's joint inspection day (综合查一次) or a
    patrol route of its grids (定岗巡查), planned in ``deploy/config/inspections.yaml``. One per
    unit, plan and day. Subject and Kafka key: the task id."""

    event_type = "whistle.inspection.planned"

    task_id: UUID
    plan_id: str
    kind: InspectionKind
    name: str = Field(description="the plan's name, e.g. 城关镇综合查一次")
    township_code: str
    unit_id: str
    grid_ids: list[str] = Field(description="the route's grids; empty: the whole township")
    due_on: date = Field(description="the county's date the task is for")
    planned_at: AwareDatetime


class InspectionFinding(BaseModel):
    """One problem an inspection found: it becomes a tip on channel ``inspection``. The
    officer's record of what the unit found, written by staff as progress notes are (no
    citizen's words or contact; the tip made of it is sealed as every tip is)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=4000)
    grid_id: str = Field(min_length=1, max_length=64)
    location: GeoPoint | None = None
    resolved_on_spot: bool = False
    resolution_note: str | None = Field(default=None, max_length=1000)


class InspectionTaskCompleted(EventData):
    """An officer of the unit completed its inspection task, with what it found: each finding
    becomes a tip (intake, channel ``inspection``) and so a case; none found is a result too.
    Subject and Kafka key: the task id."""

    event_type = "whistle.inspection.completed"

    task_id: UUID
    plan_id: str
    kind: InspectionKind
    township_code: str
    unit_id: str
    due_on: date
    findings: list[InspectionFinding] = Field(max_length=50)
    completed_by: str = Field(description="the officer's subject")
    completed_at: AwareDatetime


# --- the township's joint meeting (联席会议) ------------------------------------------------

DecisionOwnerKind = Literal["department", "unit"]


class MeetingConvened(EventData):
    """联席会议: a township convened a joint meeting with county departments to settle what
    routine whistles did not — one case, or overdue whistles of its own (whose cases it names).
    Each department summoned hears of it on its own topic (``whistle.meeting.summoned``).
    Subject and Kafka key: the meeting id."""

    event_type = "whistle.meeting.convened"

    meeting_id: UUID
    township_code: str
    held_at: AwareDatetime = Field(description="when the meeting sits")
    place: str = Field(min_length=1, max_length=200)
    departments: list[str] = Field(min_length=1, description="the departments summoned to attend")
    agenda: list[str] = Field(min_length=1, description="议题, one line each")
    case_ids: list[UUID] = Field(min_length=1, description="the cases it is to settle")
    whistle_ids: list[UUID] = Field(
        default_factory=list, description="the overdue whistles referred to it, if any"
    )
    convened_by: str = Field(description="the township leader's subject")
    convened_at: AwareDatetime


class MeetingSummoned(EventData):
    """A department's summons to a joint meeting, on its own topic in the meeting's county
    (``escalation.dept.<code>.v1``, ``escalation.dept.<county>.<code>.v1`` outside the default
    county). Subject and Kafka key: the meeting id."""

    event_type = "whistle.meeting.summoned"

    meeting_id: UUID
    department_code: str
    township_code: str
    held_at: AwareDatetime
    place: str
    agenda: list[str]
    case_ids: list[UUID]
    whistle_ids: list[UUID] = Field(
        default_factory=list, description="the meeting's overdue whistles that summoned this one"
    )


class MeetingHeld(EventData):
    """The meeting sat: who of those summoned attended, and its minutes (会议纪要). Subject
    and Kafka key: the meeting id."""

    event_type = "whistle.meeting.held"

    meeting_id: UUID
    township_code: str
    attended: list[str] = Field(description="the summoned departments present")
    absent: list[str] = Field(description="the summoned departments that did not attend")
    minutes: str = Field(min_length=1, max_length=20000, description="会议纪要")
    recorded_by: str
    recorded_at: AwareDatetime


class MeetingDecisionRecorded(EventData):
    """议定事项: a decision of the meeting — who owns it (a county department, or a unit of
    the township), what they are to do and by when. Escalation runs a clock on it
    (``meeting_decision``) that climbs the same ladder as a whistle's; a department owner gets
    a copy on its own topic. Subject and Kafka key: the meeting id."""

    event_type = "whistle.meeting.decision_recorded"

    meeting_id: UUID
    decision_id: UUID
    case_id: UUID = Field(description="the meeting's case it settles")
    township_code: str
    owner_kind: DecisionOwnerKind
    owner_code: str = Field(description="the department's code or the unit's id")
    task: str = Field(min_length=1, max_length=2000)
    due_at: AwareDatetime
    warn_at: AwareDatetime
    policy_id: str = Field(description="whose ladder (warning fraction, 催办, 督办) it climbs")
    recorded_by: str
    recorded_at: AwareDatetime


class MeetingDecisionReportSubmitted(EventData):
    """A department reports its decision done from its own system, produced onto
    ``escalation.meetings.v1`` with its token (as the department page does over HTTP).
    Subject and Kafka key: the meeting id."""

    event_type = "whistle.meeting.decision_report_submitted"

    meeting_id: UUID
    decision_id: UUID
    department_code: str
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(default_factory=list)
    officer: str | None = Field(default=None, max_length=200)


class MeetingDecisionReported(EventData):
    """A unit of the township reported a joint meeting's decision it owns done, through
    dispatch (``POST /v1/meeting-decisions/{id}/done``, the unit member's token checked
    there); escalation stops the decision's clock and records ``whistle.meeting.decision_done``.
    Subject and Kafka key: the case id."""

    event_type = "whistle.meeting.decision_reported"

    meeting_id: UUID
    decision_id: UUID
    case_id: UUID
    unit_id: str = Field(description="the owner unit the member acts for")
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(default_factory=list)
    actor: str = Field(description="the unit member's subject, or the officer named")
    reported_at: AwareDatetime


class MeetingDecisionDone(EventData):
    """The owner reported the decision done: its clock stopped, on time or late. Subject and
    Kafka key: the meeting id."""

    event_type = "whistle.meeting.decision_done"

    meeting_id: UUID
    decision_id: UUID
    case_id: UUID
    owner_kind: DecisionOwnerKind
    owner_code: str
    result: str
    evidence: list[Sha256] = Field(default_factory=list)
    done_at: AwareDatetime
    due_at: AwareDatetime
    on_time: bool
    via: Literal["http", "kafka", "dispatch"] = Field(
        description="a department over HTTP or from its own system; a unit through dispatch"
    )
    actor: str | None = None


EVENT_MODELS: tuple[type[EventData], ...] = (
    TipReceived,
    TipSupplemented,
    TipRated,
    TipFollowUpUnreachable,
    PersonalDataErased,
    CaseAssistanceRequested,
    CaseReferred,
    CaseOpened,
    CaseTriageRequired,
    CaseAssigned,
    CaseAccepted,
    CaseRejected,
    CaseStarted,
    CaseProgressRecorded,
    CaseResolved,
    CaseClosed,
    CaseReopened,
    CaseContacted,
    CaseMerged,
    CaseSplit,
    CaseAdmissionProposed,
    CaseAdmissionDecided,
    CaseLegalReviewRequested,
    CaseLegalReviewDecided,
    WhistleBlown,
    DeadlinesSet,
    DeadlineStopped,
    DeadlineWarning,
    DeadlineOverdue,
    CaseChased,
    CaseSupervised,
    LeadershipNotified,
    ExtensionRequested,
    ExtensionDecided,
    DeadlineRecomputed,
    WhistleNotified,
    ReferralSubmitted,
    WhistleReceiptSubmitted,
    WhistleReplySubmitted,
    WhistleReported,
    WhistleReplied,
    StaffAssessed,
    InspectionTaskPlanned,
    InspectionTaskCompleted,
    MeetingConvened,
    MeetingSummoned,
    MeetingHeld,
    MeetingDecisionRecorded,
    MeetingDecisionReportSubmitted,
    MeetingDecisionReported,
    MeetingDecisionDone,
)
EVENT_TYPES: dict[str, type[EventData]] = {m.event_type: m for m in EVENT_MODELS}
