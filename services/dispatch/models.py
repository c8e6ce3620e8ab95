"""Dispatch's tables: the cases and who holds them."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import Column, DateTime, Index, String, Text, Uuid
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
        # A supporting unit's members list the joint operations they support.
        Index("ix_cases_supporting_units", "supporting_units", postgresql_using="gin"),
    )

    id: UUID = Field(primary_key=True)
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
    # 联合执法: units of the supporting departments, who may read the case and record progress.
    supporting_units: list[str] = Field(
        default_factory=list, sa_column=Column(ARRAY(String), nullable=False, server_default="{}")
    )
    catalogue_version: str
    routing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
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
            authority=item.authority.value,
            urgency=self.urgency,  # type: ignore[arg-type]
            deadline_policy=item.deadline_policy,
            catalogue_version=catalogue_version,
            rule=rule,
            explanation=explanation,
            actor=actor,
            actor_role=actor_role,
            supporting_units=self.supporting_units,
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
