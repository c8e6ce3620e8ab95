"""The ledger's tables: append-only entries, the Merkle tree over them, signed tree heads, the
log's size, each tip's key (outside the log), and which tips belong to a case."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    # Gap-free, 0-based: the entry's leaf index in the Merkle tree.
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    source: str
    event_id: str
    type: str
    subject: str | None = Field(default=None, sa_column=Column(String, index=True))
    topic: str
    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    canonical: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    # The event's county (the envelope attribute its canonical bytes commit to); None for an
    # event naming none, the default county's. What a one-county auditor may read.
    county: str | None = Field(default=None, sa_column=Column(String(6)))


class LedgerNode(SQLModel, table=True):
    """The hash of a perfect subtree (see services.ledger.merkle.NodeId), level 0 the leaves.

    This is what the log commits to: roots and proofs are computed from these rows alone,
    written in the transaction that appends the entry completing them, and never changed.
    """

    __tablename__ = "ledger_node"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StoredTreeHead(SQLModel, table=True):
    """A signed tree head (services.ledger.heads.TreeHead); at most one per size."""

    __tablename__ = "tree_head"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerState(SQLModel, table=True):
    """One row holding the log's size; locking it serialises appends so numbers never gap."""

    __tablename__ = "ledger_state"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class TipKey(SQLModel, table=True):
    """A tip's AES-256-GCM key: its events' personal fields are sealed under it in the log
    (services.ledger.shredding). Outside the log: erasure deletes the row, and what it sealed
    can no longer be read, while the entries and their hashes stay as they were."""

    __tablename__ = "ledger_tip_key"

    tip_id: UUID = Field(primary_key=True)
    key: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class CaseTip(SQLModel, table=True):
    """The tips of a case: the one it was opened for, and those merged into it. A tip split out
    of a case belongs to both: the first case's trail still shows what it was part of."""

    __tablename__ = "ledger_case_tip"

    tip_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(primary_key=True, index=True)


class MeetingCase(SQLModel, table=True):
    """The cases a joint meeting (联席会议) was convened on: its events are keyed by the meeting,
    and each case's trail shows them with the case's own."""

    __tablename__ = "ledger_meeting_case"

    meeting_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(primary_key=True, index=True)


# --- KPI facts: a projection of the recorded events, kept in the transaction that records them
# (services.ledger.projection). Unlike the entries, these rows are updated as a case goes on.


class KpiCase(SQLModel, table=True):
    """What the county's rates need to know about one case, merged from its events in any order
    (see services.ledger.projection.MERGE)."""

    __tablename__ = "kpi_case"

    case_id: UUID = Field(primary_key=True)
    tip_id: UUID | None = Field(default=None, index=True)
    township: str | None = None
    unit: str | None = None
    matter: str | None = None
    # None: its events named none, the default county's.
    county: str | None = Field(default=None, sa_column=Column(String(6)))
    channel: str | None = None  # from the tip, whichever arrives first
    tip_on_spot: bool | None = None  # a grid worker's tip already resolved on the spot
    # The first report: when the tip the case was opened for was received (发现时效 runs from it).
    reported_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    opened_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    first_response_due_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    first_response_stopped_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    first_response_met: bool | None = None
    first_response_late_seconds: int | None = None
    # 联系群众: the earliest contact with the citizen the unit recorded (响应率 counts it).
    first_contacted_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    resolution_round: int | None = None
    resolution_due_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    resolution_stop_round: int | None = None
    resolution_stopped_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    resolution_met: bool | None = None
    resolution_late_seconds: int | None = None
    resolved_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    resolution: str | None = None
    # 考核: the officer who resolved the case (the latest resolution's actor).
    resolved_by: str | None = None
    closed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reopened_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reopened: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    rejections: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_rejected_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True))
    )
    last_rejection_reason: str | None = None


class KpiTip(SQLModel, table=True):
    """A tip's facts, kept until (and after) its case arrives: tips and cases travel on
    different topics, so either may be recorded first."""

    __tablename__ = "kpi_tip"

    tip_id: UUID = Field(primary_key=True)
    channel: str
    resolved_on_spot: bool
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class KpiRejection(SQLModel, table=True):
    """One 退单: the n-th rejection of a case, with its reason and who sent it back."""

    __tablename__ = "kpi_rejection"

    case_id: UUID = Field(primary_key=True)
    ordinal: int = Field(sa_column=Column(Integer, primary_key=True, autoincrement=False))
    reason: str
    township: str | None = None
    unit: str | None = None
    staff: str | None = None  # the officer who sent it back
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class KpiRating(SQLModel, table=True):
    """A citizen's rating (回访) of a resolution; a tip rated again after a reopening keeps its
    latest rating."""

    __tablename__ = "kpi_rating"

    tip_id: UUID = Field(primary_key=True)
    rated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
    case_id: UUID = Field(index=True)
    rating: str
    channel: str | None = None  # web, wechat, hotline; None for ratings recorded before it was


class KpiFollowUpMiss(SQLModel, table=True):
    """A 12345 回访 call that could not reach the citizen: not a rating, counted beside them."""

    __tablename__ = "kpi_follow_up_miss"

    call_id: str = Field(primary_key=True)
    tip_id: UUID
    case_id: UUID = Field(index=True)
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class KpiWhistle(SQLModel, table=True):
    """One summoned department of one whistle (吹哨): when it was blown, its 报到 and reply."""

    __tablename__ = "kpi_whistle"

    whistle_id: UUID = Field(primary_key=True)
    department: str = Field(primary_key=True)
    case_id: UUID | None = Field(default=None, index=True)
    township: str | None = None
    blown_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    # From the department's notice: a summons unanswered by these counts against the department.
    receipt_due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reply_due_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reported_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    report_on_time: bool | None = None
    report_latency_seconds: int | None = None
    replied_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    reply_on_time: bool | None = None


class KpiLadder(SQLModel, table=True):
    """A chase (催办) or supervision (督办): of a case's own clock, or of a summoned
    department's whistle clock (``department`` set)."""

    __tablename__ = "kpi_ladder"

    event_id: str = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    step: str  # chase, supervise
    clock: str  # the clock kind
    department: str | None = None
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class KpiLegalReview(SQLModel, table=True):
    """A legal review (法制审核) decided: approved, or returned to the officer who asked for it."""

    __tablename__ = "kpi_legal_review"

    review_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
    staff: str | None = None  # who requested it: a return counts against their decision
    township: str | None = None
    unit: str | None = None
    approved: bool
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class KpiAssessment(SQLModel, table=True):
    """A township's assessment opinion (双重考核) of one seconded officer for one period: the
    latest given holds."""

    __tablename__ = "kpi_assessment"

    staff: str = Field(primary_key=True)
    period: str = Field(primary_key=True)  # 2026-12, 2026-Q4 or 2026
    assessment_id: UUID
    unit: str
    department: str | None = None
    township: str
    grade: str
    opinion: str
    seal: str
    assessed_by: str
    assessed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class KpiInspection(SQLModel, table=True):
    """A unit's inspection task (综合查一次, 定岗巡查): planned for a day, completed or not. Its
    planning and its completion may arrive in either order; each fills in what it knows."""

    __tablename__ = "kpi_inspection"

    task_id: UUID = Field(primary_key=True)
    plan_id: str | None = None
    kind: str | None = None
    township: str | None = None
    unit: str | None = None
    due_on: date | None = Field(default=None, sa_column=Column(Date, nullable=True, index=True))
    completed_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    findings: int | None = None
    # None: its events named none, the default county's.
    county: str | None = Field(default=None, sa_column=Column(String(6)))
