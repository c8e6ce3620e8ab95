"""Dispatch's tables: the cases and who holds them."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Column, Date, DateTime, Index, String, Text, Uuid, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

from contracts.events import CaseAssigned

if TYPE_CHECKING:
    from reference.county import MatterItem

# Cases that keep a staff member busy, for picking the least loaded one.
HELD_STATUSES = ("assigned", "accepted", "in_progress")


class Case(SQLModel, table=True):
    __tablename__ = "cases"
    __table_args__ = (
        # Merge candidates are looked up by matter among recently opened cases.
        Index("ix_cases_matter_created", "matter_code", "created_at"),
        # A county's cases by status and township: its lists and queues (docs/scale.md,
        # "Tenancy": the county leads).
        Index("ix_cases_county_status", "county", "status", "township_code"),
        # A supporting unit's members list the joint operations they support.
        Index("ix_cases_supporting_units", "supporting_units", postgresql_using="gin"),
    )

    id: UUID = Field(primary_key=True)
    # The county (tenant) the case belongs to, by division code: its tip's, or the referring
    # department's. Who may read it is scoped by it first (queries.visible_to).
    county: str = Field(sa_column=Column(String(6), nullable=False))
    tip_id: UUID = Field(sa_column=Column(Uuid, nullable=False, unique=True))
    status: str = Field(index=True)
    matter_code: str | None = None
    township_code: str | None = Field(default=None, index=True)
    village_code: str | None = None
    grid_id: str | None = None
    # Where the case's own tip was reported (WGS 84), for merging near-duplicates.
    lat: float | None = None
    lon: float | None = None
    urgency: str
    unit_id: str | None = Field(default=None, index=True)
    staff_id: str | None = Field(default=None, index=True)
    queue: str | None = None
    rejections: int = 0
    reopens: int = 0  # citizen dissatisfied: what "反复投诉未解决" whistles look at
    # 回访 (lifecycle.closes_at): the latest resolution, and a follow-up of it recorded (a
    # rating on any channel); the case closes after one or the follow-up window after the other.
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    followed_up_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # 联系群众: when the unit first contacted the citizen, as it recorded it (响应率 counts it).
    contacted_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # 联合执法: units of the supporting departments, who may read the case and record progress.
    supporting_units: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False, server_default="{}")
    )
    catalogue_version: str
    routing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    # In whose name it is handled, the legal basis and the documents used (enforcement.py's
    # Capacity.record()), set by every assignment; every step of the case carries it.
    acting: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    # A finding of a unit's own inspection (channel inspection): the task that found it.
    inspection_task_id: UUID | None = Field(default=None, sa_column=Column(Uuid))
    version: int = 1
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))

    def step(self, actor: str, actor_role: str) -> dict[str, Any]:
        """What every lifecycle event (``CaseStep``) records: the case as it now stands, and
        who acted in which role."""
        return {
            "case_id": self.id,
            "tip_id": self.tip_id,
            "actor": actor,
            "actor_role": actor_role,
            "version": self.version,
            "township_code": self.township_code,
            "unit_id": self.unit_id,
            **(self.acting or {}),
        }

    def assignment(
        self,
        unit_kind: str,
        item: MatterItem,
        catalogue_version: str,
        rule: str,
        explanation: list[str],
        *,
        actor: str | None = None,
        actor_role: str | None = None,
    ) -> CaseAssigned:
        """The ``CaseAssigned`` event of the case as now assigned (its unit, staff and
        supporting units set), by routing or by hand (``actor``)."""
        assert self.unit_id is not None
        return CaseAssigned(
            case_id=self.id,
            tip_id=self.tip_id,
            unit_id=self.unit_id,
            unit_kind=unit_kind,
            township_code=self.township_code,
            staff_id=self.staff_id,
            matter_code=item.code,
            # A service request has no authority type: the event says "service".
            authority=item.authority.value if item.authority else item.kind.value,
            urgency=self.urgency,  # type: ignore[arg-type]
            deadline_policy=item.deadline_policy,
            catalogue_version=catalogue_version,
            rule=rule,
            explanation=explanation,
            actor=actor,
            actor_role=actor_role,
            supporting_units=self.supporting_units,
            **(self.acting or {}),
        )


# ---------------------------------------------------------------- what the console shows


class TipText(SQLModel, table=True):
    """The citizen's words, kept for the dispatcher who triages the case."""

    __tablename__ = "tip_text"

    tip_id: UUID = Field(primary_key=True)
    text: str = Field(sa_column=Column(Text, nullable=False))
    address: str | None = None
    channel: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TriageLabel(SQLModel, table=True):
    """A matter a dispatcher gave a tip by hand, with the tip's words: a labelled example for
    the triage model (``whistle triage train``). ``suggested`` is what triage had made of it."""

    __tablename__ = "triage_label"

    id: UUID = Field(primary_key=True)
    tip_id: UUID = Field(index=True)
    case_id: UUID
    text: str = Field(sa_column=Column(Text, nullable=False))
    matter_code: str
    suggested: str | None = None
    actor: str
    actor_role: str
    labelled_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CaseClock(SQLModel, table=True):
    """A case's first-response or resolution clock as escalation announced it."""

    __tablename__ = "case_clock"

    case_id: UUID = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    round: int = Field(primary_key=True)
    warn_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    stopped_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    on_time: bool | None = None


class CaseTimelineEntry(SQLModel, table=True):
    """One event of a case (dispatch's own and escalation's), as consumed from its topic."""

    __tablename__ = "case_timeline"

    source: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    type: str
    time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))


class Whistle(SQLModel, table=True):
    """吹哨: a township summoned county departments for a case (or routing did, automatically)."""

    __tablename__ = "whistles"

    id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    township_code: str | None = Field(default=None, index=True)
    departments: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    reason_code: str
    reason: str
    rule: str
    automatic: bool = False
    actor: str
    actor_role: str
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CaseTip(SQLModel, table=True):
    """A near-duplicate tip that joined an open case instead of opening its own."""

    __tablename__ = "case_tip"

    tip_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id", index=True)
    joined_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    rule: str  # same_grid | within_distance
    distance_m: float | None = None
    # The tip as received, to triage it as a case of its own if a dispatcher splits it off.
    tip: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    left_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    split_case_id: UUID | None = None


# An admission decision's states (AdmissionDecision.status).
PROPOSED, APPROVED, REJECTED = "proposed", "approved", "rejected"


class AdmissionDecision(SQLModel, table=True):
    """准入: a county supervisor's proposal that a township carry an out-of-list matter for one
    case, and the county government's decision on it. Only an approved one is in force, and
    only then may the matter be given to that township's units (authority.py)."""

    __tablename__ = "admission_decision"

    id: UUID = Field(primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id", index=True)
    matter_code: str
    township_code: str
    unit_id: str = Field(description="the unit proposed to act, assigned on approval")
    staff_id: str | None = None
    approving_body: str = Field(description="批准机关, e.g. 县人民政府")
    document_no: str = Field(description="批准文号")
    reason: str
    proposed_by: str
    proposed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = Field(description="proposed, approved or rejected")
    decided_by: str | None = None
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    opinion: str | None = Field(default=None, sa_column=Column(Text))


# A legal review's states (LegalReview.status).
PENDING, RETURNED = "pending", "returned"


class LegalReview(SQLModel, table=True):
    """法制审核: a penalised resolution on the county's 重大执法决定 list, held until a legal
    reviewer approves it (it then takes effect: the case is resolved) or returns it with an
    opinion (the case is in progress again). At most one is pending per case."""

    __tablename__ = "legal_review"
    __table_args__ = (
        Index(
            "uq_legal_review_pending",
            "case_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: UUID = Field(primary_key=True)
    case_id: UUID = Field(foreign_key="cases.id", index=True)
    note: str = Field(sa_column=Column(Text, nullable=False))
    penalty: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    evidence: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False, server_default="{}")
    )
    major_decisions: list[str] = Field(sa_column=Column(ARRAY(String), nullable=False))
    requested_by: str
    requested_role: str
    requested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Who decided, as the step recorded it (field_record.py): their 执法证 number checked valid
    # that day, and where (the grid; the point if given): the resolution carries them on approval.
    certificate_number: str | None = None
    grid_id: str | None = None
    point: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    status: str = Field(description="pending, approved or returned")
    reviewed_by: str | None = None
    reviewed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    opinion: str | None = Field(default=None, sa_column=Column(Text))


# An inspection task's states (InspectionTask.status); a task not done by the end of its day is
# missed, which is read off the date, not stored (it can still be completed, late).
PLANNED, DONE = "planned", "done"


class InspectionTask(SQLModel, table=True):
    """A unit's inspection task of one plan on one day (综合查一次, 定岗巡查), created by the
    inspection scheduler; an officer of the unit completes it with what was found (perhaps
    nothing). One per plan, unit and day: the unique key is what makes racing schedulers plan
    it once."""

    __tablename__ = "inspection_task"
    __table_args__ = (
        Index("uq_inspection_task_plan_unit_day", "plan_id", "unit_id", "due_on", unique=True),
        Index("ix_inspection_task_unit_due", "unit_id", "due_on"),
        # A county's tasks by day (docs/scale.md, "Tenancy": the county leads).
        Index("ix_inspection_task_county_due", "county", "due_on", "township_code"),
    )

    id: UUID = Field(primary_key=True)
    # The county (tenant) whose plan it was planned from, by division code (dispatch_0015).
    county: str = Field(sa_column=Column(String(6), nullable=False))
    plan_id: str
    kind: str = Field(description="joint (综合查一次) or patrol (定岗巡查)")
    name: str
    township_code: str = Field(index=True)
    unit_id: str
    grid_ids: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False, server_default="{}")
    )
    due_on: date = Field(sa_column=Column(Date, nullable=False))
    planned_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    status: str = PLANNED
    completed_by: str | None = None
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # What was found, as completed (each becomes a tip on channel inspection); [] = none found.
    findings: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSONB))


class ReferralRequest(SQLModel, table=True):
    """A referral received over HTTP with an ``Idempotency-Key``: the referral id the key
    stands for (per department) and a digest of the body, so that a retry gets the same case
    and another body under the same key is refused."""

    __tablename__ = "referral_request"

    referral_id: UUID = Field(primary_key=True)
    department_code: str
    idempotency_key: str
    fingerprint: str
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CaseEvidence(SQLModel, table=True):
    """A file uploaded as evidence for a case (photo, video, scanned 文书), stored by SHA-256
    under ``WHISTLE_EVIDENCE_DIR``: a step of the case may cite only these (evidence.py). The
    same bytes uploaded for two cases are one file and two rows."""

    __tablename__ = "case_evidence"

    case_id: UUID = Field(foreign_key="cases.id", primary_key=True)
    sha256: str = Field(primary_key=True)
    content_type: str
    size: int
    uploaded_by: str
    uploaded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class UnitDecision(SQLModel, table=True):
    """A joint meeting's decision (联席会议议定事项) a unit of a township owns, kept from
    escalation's ``whistle.meeting.decision_recorded``: the unit reports it done through
    dispatch (services/dispatch/meeting_decisions.py), and escalation stops its clock."""

    __tablename__ = "unit_decision"

    decision_id: UUID = Field(primary_key=True)
    meeting_id: UUID
    case_id: UUID
    township_code: str
    unit_id: str = Field(index=True)
    task: str
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    reported_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reported_by: str | None = None
    result: str | None = None
    done_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    on_time: bool | None = None
