"""The KPI facts (``kpi_case``, ``kpi_tip``, ``kpi_rejection``, ``kpi_rating``,
``kpi_follow_up_miss``, ``kpi_whistle``, ``kpi_ladder``), projected from the events the ledger
records, in the same transaction and the same batch write as the entries.

Each event contributes a partial row of its case's facts. Partial rows merge by rules that do
not depend on the order events arrive in (tips and deadlines travel on other topics than the
case's own events): a fact keyed by a time or a round takes the later one, a first time (the
first contact with the citizen) the earlier one, a count adds up, a plain fact takes the newer
non-null value. The same rules merge a batch's rows in Python and a
batch with the stored row in one ``INSERT … ON CONFLICT DO UPDATE``.

A tip's channel and whether it was resolved on the spot arrive on ``whistle.tip.received``,
which has no case id; ``kpi_tip`` keeps them, and one ``UPDATE … FROM kpi_tip`` per batch copies
them onto the cases of the tips and cases that batch touched, whichever came first.

Ratings, whistles and ladder steps are facts of their own, each set by one kind of event, so
their order does not matter either: a whistle's row merges its blowing, the department's notice
with its deadlines (an approved extension moves the reply deadline later: the later one holds),
its 报到 and its reply whichever is recorded first.

The projection never stops an event from being recorded: an event it cannot read is recorded,
logged and left out of the KPIs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Table, Update, and_, bindparam, case, delete, func, or_, update
from sqlalchemy.dialects.postgresql import Insert, insert

from contracts.envelope import CloudEvent
from services.ledger.models import (
    KpiAssessment,
    KpiCase,
    KpiFollowUpMiss,
    KpiInspection,
    KpiLadder,
    KpiLegalReview,
    KpiRating,
    KpiRejection,
    KpiTip,
    KpiWhistle,
)

log = logging.getLogger(__name__)

# Facts that take the newer non-null value.
LATEST = (
    "tip_id",
    "county",
    "township",
    "unit",
    "matter",
    "opened_at",
    "first_response_due_at",
    "first_response_stopped_at",
    "first_response_met",
    "first_response_late_seconds",
)
# Facts that go together with an ordering fact, and are taken when it is at least as late.
ORDERED: dict[str, tuple[str, ...]] = {
    "resolution_round": ("resolution_due_at",),
    "resolution_stop_round": (
        "resolution_stopped_at",
        "resolution_met",
        "resolution_late_seconds",
    ),
    "resolved_at": ("resolution", "resolved_by"),
    "last_rejected_at": ("rejections", "last_rejection_reason"),
    "closed_at": (),
    "reopened_at": (),
}
# Facts that take the earlier non-null value.
EARLIEST = ("first_contacted_at",)
COUNTS = ("reopened",)
COLUMNS = (*LATEST, *ORDERED, *(c for cs in ORDERED.values() for c in cs), *EARLIEST, *COUNTS)
# Tip facts the batch's UPDATE copies onto cases.
FROM_TIP = ("channel", "tip_on_spot", "reported_at")

RESOLVED_KINDS = ("on_the_spot", "rectified", "penalised")
WHISTLE_FACTS = (
    "case_id",
    "township",
    "blown_at",
    "reported_at",
    "report_on_time",
    "report_latency_seconds",
    "replied_at",
    "reply_on_time",
)
# A summoned department's deadlines: the later holds (an extension only moves one later).
WHISTLE_DUES = ("receipt_due_at", "reply_due_at")
LADDER_STEPS = {"case.chased": "chase", "case.supervised": "supervise"}
# Clocks whose chases and supervisions are not the case's unit's or township's: a legal review
# (法制审核) is late at the legal office, which the assessment figures do not rate (README, KPIs).
NOT_THE_UNITS_CLOCKS = frozenset({"legal_review"})


def _merge(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Fold ``new`` into ``old`` by the rules above (the Python twin of
    :func:`_kpi_case_upsert`)."""
    for name in LATEST:
        if new.get(name) is not None:
            old[name] = new[name]
    for order, facts in ORDERED.items():
        value = new.get(order)
        if value is not None and (old.get(order) is None or value >= old[order]):
            old[order] = value
            for fact in facts:
                old[fact] = new.get(fact)
    for name in EARLIEST:
        if new.get(name) is not None and (old.get(name) is None or new[name] < old[name]):
            old[name] = new[name]
    for name in COUNTS:
        old[name] = old.get(name, 0) + new.get(name, 0)


def _kpi_case_upsert() -> Insert:
    """A case's facts, folded into what is kept by the rules above (the SQL twin of
    :func:`_merge`)."""
    table = KpiCase.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    excluded = statement.excluded
    values: dict[str, Any] = {}
    for name in LATEST:
        values[name] = func.coalesce(excluded[name], table.c[name])
    for order, facts in ORDERED.items():
        newer = and_(
            excluded[order].isnot(None),
            or_(table.c[order].is_(None), excluded[order] >= table.c[order]),
        )
        for name in (order, *facts):
            values[name] = case((newer, excluded[name]), else_=table.c[name])
    for name in EARLIEST:
        values[name] = func.least(excluded[name], table.c[name])  # LEAST skips NULLs
    for name in COUNTS:
        values[name] = table.c[name] + excluded[name]
    return statement.on_conflict_do_update(index_elements=["case_id"], set_=values)


def _newest_wins(table: Table, keys: Sequence[str], columns: Sequence[str], at: str) -> Insert:
    """A row replacing the kept one of the same ``keys`` unless that one is newer by ``at``."""
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={c: statement.excluded[c] for c in columns},
        where=statement.excluded[at] >= table.c[at],
    )


def _kpi_whistle_upsert() -> Insert:
    """A summons' facts: the first known of each, the latest of each due time."""
    table = KpiWhistle.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    merged = {c: func.coalesce(statement.excluded[c], table.c[c]) for c in WHISTLE_FACTS}
    for c in WHISTLE_DUES:
        merged[c] = func.greatest(statement.excluded[c], table.c[c])  # skips NULLs
    return statement.on_conflict_do_update(index_elements=["whistle_id", "department"], set_=merged)


def _kpi_inspection_upsert() -> Insert:
    """An inspection's facts, each kept until a later event knows it."""
    table = KpiInspection.__table__  # type: ignore[attr-defined]
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=["task_id"],
        set_={
            c.name: func.coalesce(statement.excluded[c.name], table.c[c.name])
            for c in table.columns
            if c.name != "task_id"
        },
    )


def _kpi_case_channels() -> Update:
    """The channel, on-the-spot flag and report time of the cases of ``tip_ids`` that lack them,
    from their tips' rows."""
    tip = KpiTip.__table__  # type: ignore[attr-defined]
    kpi_case = KpiCase.__table__  # type: ignore[attr-defined]
    return (
        update(kpi_case)
        .where(
            kpi_case.c.tip_id == tip.c.tip_id,
            kpi_case.c.channel.is_(None),
            tip.c.tip_id.in_(bindparam("tip_ids", expanding=True)),
        )
        .values(
            channel=tip.c.channel,
            tip_on_spot=tip.c.resolved_on_spot,
            reported_at=tip.c.received_at,
        )
    )


def _ignoring_known(table: Table) -> Insert:
    return insert(table).on_conflict_do_nothing()


# Built once: rebuilding these per batch, the KPI case upsert's dozens of CASE expressions and
# their cache key most of all, was a tenth of the ledger's CPU under load (issue #17).
_ASSESSMENT_FACTS = [
    c.name
    for c in KpiAssessment.__table__.columns  # type: ignore[attr-defined]
    if c.name not in ("staff", "period")
]
KPI_TIPS = _ignoring_known(KpiTip.__table__)  # type: ignore[attr-defined]
KPI_CASES = _kpi_case_upsert()
KPI_REJECTIONS = _ignoring_known(KpiRejection.__table__)  # type: ignore[attr-defined]
KPI_LEGAL_REVIEWS = _ignoring_known(KpiLegalReview.__table__)  # type: ignore[attr-defined]
KPI_ASSESSMENTS = _newest_wins(
    KpiAssessment.__table__,  # type: ignore[attr-defined]
    ("staff", "period"),
    _ASSESSMENT_FACTS,
    "assessed_at",
)
KPI_INSPECTIONS = _kpi_inspection_upsert()
KPI_RATINGS = _newest_wins(
    KpiRating.__table__,  # type: ignore[attr-defined]
    ("tip_id",),
    ("rated_at", "case_id", "rating", "channel"),
    "rated_at",
)
KPI_FOLLOW_UP_MISSES = _ignoring_known(KpiFollowUpMiss.__table__)  # type: ignore[attr-defined]
KPI_WHISTLES = _kpi_whistle_upsert()
KPI_LADDER = _ignoring_known(KpiLadder.__table__)  # type: ignore[attr-defined]
KPI_PREMATURE = delete(KpiLadder.__table__).where(  # type: ignore[attr-defined]
    KpiLadder.__table__.c.event_id.in_(bindparam("event_ids", expanding=True))  # type: ignore[attr-defined]
)
KPI_CASE_CHANNELS = _kpi_case_channels()


@dataclass
class KpiBatch:
    """The KPI facts of one transaction's events, written by :meth:`write` at its commit."""

    cases: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    tips: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    tip_ids: set[UUID] = field(default_factory=set)
    ratings: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    misses: dict[str, dict[str, Any]] = field(default_factory=dict)
    whistles: dict[tuple[UUID, str], dict[str, Any]] = field(default_factory=dict)
    ladder: list[dict[str, Any]] = field(default_factory=list)
    legal_reviews: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    assessments: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    inspections: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    # Ladder events that fired although their clock had stopped first (the stop reached
    # escalation late): not chases or supervisions to count.
    premature: set[str] = field(default_factory=set)

    def observe(self, event: CloudEvent) -> None:
        if (event.model_extra or {}).get("copyof"):
            return  # a department's copy of an event counted under its own id
        try:
            self._observe(event)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("event %s (%s) left out of the KPIs: %r", event.id, event.type, exc)

    def _case(self, case_id: UUID, **facts: Any) -> None:
        merged = self.cases.setdefault(case_id, {})
        _merge(merged, facts)

    def _whistle(self, whistle_id: UUID, department: str, **facts: Any) -> None:
        row = self.whistles.setdefault(
            (whistle_id, department), {"whistle_id": whistle_id, "department": department}
        )
        for name, value in facts.items():
            if value is not None and not (name in WHISTLE_DUES and row.get(name, value) > value):
                row[name] = value

    def _observe_whistle(self, kind: str, event: CloudEvent) -> bool:
        """Ratings, whistles and ladder steps; False if the event is none of them."""
        data = event.data
        if kind == "tip.rated":
            tip_id = UUID(data["tip_id"])
            rated_at = _time(data["rated_at"])
            if tip_id not in self.ratings or self.ratings[tip_id]["rated_at"] <= rated_at:
                self.ratings[tip_id] = {
                    "tip_id": tip_id,
                    "rated_at": rated_at,
                    "case_id": UUID(data["case_id"]),
                    "rating": data["rating"],
                    "channel": data.get("channel"),
                }
        elif kind == "tip.follow_up_unreachable":
            self.misses[data["call_id"]] = {
                "call_id": data["call_id"],
                "tip_id": UUID(data["tip_id"]),
                "case_id": UUID(data["case_id"]),
                "at": _time(data["attempted_at"]),
            }
        elif kind == "whistle.notified":
            self._whistle(
                UUID(data["whistle_id"]),
                data["department_code"],
                case_id=UUID(data["case_id"]),
                township=data.get("township_code"),
                receipt_due_at=_time(data["receipt_due_at"]),
                reply_due_at=_time(data["reply_due_at"]),
            )
        elif kind == "deadline.extension_decided" and data.get("whistle_id") and data["approved"]:
            self._whistle(
                UUID(data["whistle_id"]),
                data["department_code"],
                reply_due_at=_time(data["new_due_at"]),
            )
        elif kind == "case.whistle_blown":
            for department in data["departments"]:
                self._whistle(
                    UUID(data["whistle_id"]),
                    department,
                    case_id=UUID(data["case_id"]),
                    township=data.get("township_code"),
                    blown_at=event.time,
                )
        elif kind == "whistle.reported":
            self._whistle(
                UUID(data["whistle_id"]),
                data["department_code"],
                case_id=UUID(data["case_id"]),
                reported_at=_time(data["reported_at"]),
                report_on_time=bool(data["on_time"]),
                report_latency_seconds=int(data["latency_seconds"]),
            )
        elif kind == "whistle.replied":
            self._whistle(
                UUID(data["whistle_id"]),
                data["department_code"],
                case_id=UUID(data["case_id"]),
                replied_at=_time(data["replied_at"]),
                reply_on_time=bool(data["on_time"]),
            )
        elif kind == "staff.assessed":
            row = {
                "staff": data["staff_id"],
                "period": data["period"],
                "assessment_id": UUID(data["assessment_id"]),
                "unit": data["unit_id"],
                "department": data.get("department_code"),
                "township": data["township_code"],
                "grade": data["grade"],
                "opinion": data["opinion"],
                "seal": data["seal"],
                "assessed_by": data["assessed_by"],
                "assessed_at": _time(data["assessed_at"]),
            }
            earlier = self.assessments.get((row["staff"], row["period"]))
            if earlier is None or earlier["assessed_at"] <= row["assessed_at"]:
                self.assessments[(row["staff"], row["period"])] = row
        elif kind in ("inspection.planned", "inspection.completed"):
            task_id = UUID(data["task_id"])
            row = self.inspections.setdefault(task_id, {"task_id": task_id})
            row.update(
                plan_id=data["plan_id"],
                kind=data["kind"],
                township=data["township_code"],
                unit=data["unit_id"],
                due_on=date.fromisoformat(data["due_on"]),
                county=event.county,
            )
            if kind == "inspection.completed":
                row.update(completed_at=_time(data["completed_at"]), findings=len(data["findings"]))
        elif kind in LADDER_STEPS:
            if data["kind"] in NOT_THE_UNITS_CLOCKS:
                return True  # in the trail, not in the figures
            self.ladder.append(
                {
                    "event_id": event.id,
                    "case_id": UUID(data["case_id"]),
                    "step": LADDER_STEPS[kind],
                    "clock": data["kind"],
                    "department": data.get("department_code"),
                    "at": _time(data["fired_at"]),
                }
            )
        else:
            return False
        return True

    def _observe(self, event: CloudEvent) -> None:
        kind = event.type.removeprefix("whistle.")
        data = event.data
        if self._observe_whistle(kind, event) and kind != "case.whistle_blown":
            return
        if kind == "tip.received":
            tip_id = UUID(data["tip_id"])
            self.tips[tip_id] = {
                "tip_id": tip_id,
                "channel": data["channel"],
                "resolved_on_spot": bool(data.get("resolved_on_spot", False)),
                "received_at": _time(data["received_at"]),
            }
            self.tip_ids.add(tip_id)
            return
        if "case_id" not in data:
            return
        case_id = UUID(data["case_id"])
        if event.county is not None:
            # The case's county, from any of its events (a case never moves between counties).
            self._case(case_id, county=event.county)
        if kind == "deadlines.set":
            for deadline in data["deadlines"]:
                round_ = int(deadline.get("round", 1))
                due = _time(deadline["due_at"])
                if deadline["kind"] == "first_response" and round_ == 1:
                    self._case(case_id, first_response_due_at=due)
                elif deadline["kind"] == "resolution":
                    self._case(case_id, resolution_round=round_, resolution_due_at=due)
            return
        if kind == "deadline.stopped":
            self.premature.update(data.get("premature_steps") or ())
            round_, stopped = int(data["round"]), _time(data["stopped_at"])
            met, late = bool(data["on_time"]), int(data["late_by_seconds"])
            if data["kind"] == "first_response" and round_ == 1:
                self._case(
                    case_id,
                    first_response_stopped_at=stopped,
                    first_response_met=met,
                    first_response_late_seconds=late,
                )
            elif data["kind"] == "resolution":
                self._case(
                    case_id,
                    resolution_stop_round=round_,
                    resolution_stopped_at=stopped,
                    resolution_met=met,
                    resolution_late_seconds=late,
                )
            return
        if not kind.startswith("case."):
            return
        # A merged tip joins the case; the case's own tip stays the one it was opened for.
        tip_id = UUID(data["tip_id"]) if data.get("tip_id") and kind != "case.merged" else None
        if tip_id is not None:
            self.tip_ids.add(tip_id)
        facts: dict[str, Any] = {
            "tip_id": tip_id,
            "township": data.get("township_code"),
            "unit": data.get("unit_id"),
            "matter": data.get("matter_code"),
        }
        at = event.time
        if kind == "case.opened":
            facts["opened_at"] = at
        elif kind == "case.rejected":
            ordinal = int(data["rejections"])
            facts.update(
                last_rejected_at=at, rejections=ordinal, last_rejection_reason=data["reason"]
            )
            self.rejections.append(
                {
                    "case_id": case_id,
                    "ordinal": ordinal,
                    "reason": data["reason"],
                    "township": data.get("township_code"),
                    "unit": data.get("unit_id"),
                    "staff": data.get("actor"),
                    "at": at,
                }
            )
        elif kind == "case.resolved":
            facts.update(resolved_at=at, resolution=data["resolution"], resolved_by=data["actor"])
        elif kind == "case.legal_review_decided":
            review_id = UUID(data["review_id"])
            self.legal_reviews[review_id] = {
                "review_id": review_id,
                "case_id": case_id,
                "staff": data["requested_by"],
                "township": data.get("township_code"),
                "unit": data.get("unit_id"),
                "approved": bool(data["approved"]),
                "at": at,
            }
        elif kind == "case.closed":
            facts["closed_at"] = at
        elif kind == "case.reopened":
            facts.update(reopened_at=at, reopened=1)
        elif kind == "case.contacted":
            facts["first_contacted_at"] = _time(data["contacted_at"])
        self._case(case_id, **facts)

    def write(self, connection: Connection) -> None:
        """A few multi-row statements, whatever the number of events."""
        if self.tips:
            connection.execute(KPI_TIPS, list(self.tips.values()))
        if self.cases:
            rows = [
                {"case_id": case_id, **{c: facts.get(c) for c in COLUMNS}}
                for case_id, facts in self.cases.items()
            ]
            for row in rows:  # the counts are NOT NULL; a row that saw none has none
                row["reopened"] = row["reopened"] or 0
                row["rejections"] = row["rejections"] or 0
            connection.execute(KPI_CASES, rows)
        if self.rejections:
            connection.execute(KPI_REJECTIONS, self.rejections)
        if self.legal_reviews:
            connection.execute(KPI_LEGAL_REVIEWS, list(self.legal_reviews.values()))
        if self.assessments:
            connection.execute(KPI_ASSESSMENTS, list(self.assessments.values()))
        if self.inspections:
            columns = KpiInspection.__table__.columns  # type: ignore[attr-defined]
            rows = [{c.name: row.get(c.name) for c in columns} for row in self.inspections.values()]
            connection.execute(KPI_INSPECTIONS, rows)
        if self.ratings:
            connection.execute(KPI_RATINGS, list(self.ratings.values()))
        if self.misses:
            connection.execute(KPI_FOLLOW_UP_MISSES, list(self.misses.values()))
        if self.whistles:
            rows = [
                {c: row.get(c) for c in ("whistle_id", "department", *WHISTLE_FACTS, *WHISTLE_DUES)}
                for row in self.whistles.values()
            ]
            connection.execute(KPI_WHISTLES, rows)
        ladder = [row for row in self.ladder if row["event_id"] not in self.premature]
        if ladder:
            connection.execute(KPI_LADDER, ladder)
        if self.premature:
            connection.execute(KPI_PREMATURE, {"event_ids": list(self.premature)})
        if self.tip_ids:
            connection.execute(KPI_CASE_CHANNELS, {"tip_ids": list(self.tip_ids)})


def _time(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
