"""Escalation's tables: one row per clock of a case, and its escalation ladder's steps."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class CaseDeadline(SQLModel, table=True):
    __tablename__ = "deadline"
    # A reopened case gets a new resolution clock: round 2, 3, ... A whistle (吹哨) gives each
    # summoned department clocks of its own (whistle_receipt, whistle_reply) on the same case.
    __table_args__ = (
        Index(
            "ux_deadline_case_clock",
            "case_id",
            "kind",
            "round",
            unique=True,
            postgresql_where=text("whistle_id IS NULL AND decision_id IS NULL"),
        ),
        # A joint meeting's decision (联席会议议定事项) has one clock; a case may have many.
        Index(
            "ux_deadline_decision_clock",
            "decision_id",
            unique=True,
            postgresql_where=text("decision_id IS NOT NULL"),
        ),
        Index(
            "ux_deadline_whistle_clock",
            "whistle_id",
            "department_code",
            "kind",
            "round",
            unique=True,
            postgresql_where=text("whistle_id IS NOT NULL"),
        ),
        # What recompute.py looks for after a calendar reload: few rows among many.
        Index(
            "ix_deadline_provisional_running",
            "id",
            postgresql_where=text("status = 'running' AND provisional_reason IS NOT NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    case_id: UUID = Field(index=True)
    kind: str
    round: int = 1
    status: str = "running"  # running, then met or late when the case event stops it
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))
    warn_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    policy_id: str
    # The policy as it was when the case was assigned, and the `calendar_version` its working
    # days were counted on: later edits of either change only new cases.
    policy_snapshot: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    # Set when the calendar lacked a year the deadline reaches into (counted Monday to Friday).
    provisional_reason: str | None = None
    stopped_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    late_by_seconds: int | None = None
    # Set on a summoned department's clocks (services/escalation/whistle_protocol.py).
    whistle_id: UUID | None = None
    department_code: str | None = None
    # Set on a joint meeting's decision clock (services/escalation/meetings.py), with the
    # owner department's code when a department owns it.
    decision_id: UUID | None = None


class EscalationStep(SQLModel, table=True):
    """A step of a clock's ladder (services/escalation/ladder.py): pending until the scheduler
    fires it or the clock stops (cancelled). A clock has at most one pending step: firing one
    schedules the next in the same transaction. Fired and cancelled rows stay, as history."""

    __tablename__ = "escalation_step"
    __table_args__ = (
        # Each step of each clock's due time exists once: a second firing has no row to fire.
        UniqueConstraint("deadline_id", "generation", "step"),
        # What the scheduler scans: only pending steps, in due order.
        Index(
            "ix_escalation_step_pending",
            "due_at",
            "id",
            postgresql_where=text("fired_at IS NULL AND cancelled_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    deadline_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("deadline.id"), nullable=False)
    )
    step: str  # warning, overdue, chase, supervise
    # 1, then one more for each approved extension (延期): a moved deadline climbs a new ladder.
    generation: int = Field(
        default=1, sa_column=Column(Integer, nullable=False, server_default="1")
    )
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    provisional_reason: str | None = None
    fired_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    late_by_seconds: int | None = None
    event_id: str | None = None  # the event it fired
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class CaseAssignment(SQLModel, table=True):
    """Who holds a case now (from its latest ``CaseAssigned``): the unit that may ask for an
    extension, and the township whose command centre may grant it."""

    __tablename__ = "case_assignment"

    case_id: UUID = Field(primary_key=True)
    unit_id: str
    township_code: str | None = None
    assigned_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class DeadlineExtension(SQLModel, table=True):
    """An extension request (延期) on a running clock and its decision
    (services/escalation/extensions.py). At most one is pending per clock."""

    __tablename__ = "deadline_extension"
    __table_args__ = (
        Index(
            "ux_deadline_extension_pending",
            "deadline_id",
            unique=True,
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: UUID = Field(primary_key=True)
    deadline_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("deadline.id"), nullable=False)
    )
    case_id: UUID = Field(index=True)
    kind: str
    round: int
    status: str = "pending"  # pending, then approved or refused
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    requested_due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    extra_working_days: int | None = None
    reason: str
    requested_by: str
    requested_by_role: str
    requested_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    decided_by: str | None = None
    decided_by_role: str | None = None
    decided_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    note: str | None = None


class WhistleSummons(SQLModel, table=True):
    """A department summoned by a whistle (吹哨): why, and what it answered. Its deadlines are
    the ``deadline`` rows with the same whistle id and department code."""

    __tablename__ = "whistle_summons"
    __table_args__ = (
        Index(
            "ix_whistle_summons_open",
            "department_code",
            "notified_at",
            postgresql_where=text("replied_at IS NULL"),
        ),
    )

    whistle_id: UUID = Field(primary_key=True)
    department_code: str = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    township_code: str | None = None
    matter_code: str | None = None
    reason_code: str
    reason: str
    urgency: str
    notified_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    receipt_no: str | None = None
    reported_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reported_by: str | None = None
    result: str | None = None
    evidence: list[str] | None = Field(default=None, sa_column=Column(JSONB))
    replied_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    replied_by: str | None = None


class WhistleEvidence(SQLModel, table=True):
    """A file a summoned department uploaded for its reply to a whistle (photos, scanned 文书),
    stored by SHA-256 under ``$WHISTLE_EVIDENCE_DIR/whistles``: the reply may cite only these."""

    __tablename__ = "whistle_evidence"

    whistle_id: UUID = Field(primary_key=True)
    department_code: str = Field(primary_key=True)
    sha256: str = Field(primary_key=True)
    content_type: str
    size: int
    uploaded_by: str
    uploaded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Meeting(SQLModel, table=True):
    """A township's joint meeting (联席会议): convened with its date, place, the departments
    summoned and its agenda; held with attendance and minutes (services/escalation/meetings.py)."""

    __tablename__ = "meeting"

    id: UUID = Field(primary_key=True)
    township_code: str = Field(index=True)
    held_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    place: str
    departments: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    agenda: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    case_ids: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    whistle_ids: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    convened_by: str
    convened_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    attended: list[str] | None = Field(default=None, sa_column=Column(JSONB))
    minutes: str | None = None
    minutes_recorded_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )


class MeetingDecision(SQLModel, table=True):
    """A decision of a joint meeting (议定事项): its owner, task and due time; its clock is the
    ``deadline`` row with its id. Done when the owner reports it."""

    __tablename__ = "meeting_decision"
    __table_args__ = (Index("ix_meeting_decision_owner", "owner_kind", "owner_code"),)

    id: UUID = Field(primary_key=True)
    meeting_id: UUID = Field(foreign_key="meeting.id", index=True)
    case_id: UUID
    township_code: str
    owner_kind: str  # department, unit
    owner_code: str
    task: str
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_by: str
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    result: str | None = None
    evidence: list[str] | None = Field(default=None, sa_column=Column(JSONB))
    done_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    done_by: str | None = None


class CaseCounty(SQLModel, table=True):
    """The county (division code) of a case escalation keeps clocks for, as the case's events
    say it (docs/scale.md, "Tenancy"): the events escalation produces about the case carry it.
    A case without a row is the default county's (its events arrived before tenancy)."""

    __tablename__ = "case_county"

    case_id: UUID = Field(primary_key=True)
    county: str = Field(sa_column=Column(String(6), nullable=False))
