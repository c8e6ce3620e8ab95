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
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class CaseDeadline(SQLModel, table=True):
    __tablename__ = "deadline"
    # A reopened case gets a new resolution clock: round 2, 3, ...
    __table_args__ = (UniqueConstraint("case_id", "kind", "round"),)

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


class EscalationStep(SQLModel, table=True):
    """A step of a clock's ladder (services/escalation/ladder.py): pending until the scheduler
    fires it or the clock stops (cancelled). A clock has at most one pending step: firing one
    schedules the next in the same transaction. Fired and cancelled rows stay, as history."""

    __tablename__ = "escalation_step"
    __table_args__ = (
        # Each step of each clock exists once: a second firing has no row to fire.
        UniqueConstraint("deadline_id", "step"),
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
    due_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    provisional_reason: str | None = None
    fired_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    late_by_seconds: int | None = None
    event_id: str | None = None  # the event it fired
    cancelled_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
