"""Escalation's tables: one row per running clock of a case."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Identity, UniqueConstraint
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
