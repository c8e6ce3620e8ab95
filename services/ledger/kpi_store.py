"""Counting the KPI facts in PostgreSQL, per group and period, and the Prometheus gauges.

One aggregate over ``kpi_case`` and one over ``kpi_rejection`` per question, whatever the number
of groups; the definitions they implement are in ``services.ledger.kpis``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import ColumnElement, and_, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.kpis import (
    CITIZEN_CHANNELS,
    DISCOVERY_BUCKETS,
    GRID_CHANNEL,
    INSPECTION_CHANNEL,
    PERIOD_KINDS,
    RESOLVED_KINDS,
    SATISFIED,
    Counts,
    Period,
    local_day,
    matter_kind,
    period_of,
    rates,
)
from services.ledger.models import (
    KpiCase,
    KpiFollowUpMiss,
    KpiInspection,
    KpiLadder,
    KpiLegalReview,
    KpiRating,
    KpiRejection,
    KpiWhistle,
)
from services.runtime.clock import Clock
from services.runtime.db import Sessions

log = logging.getLogger(__name__)

# "staff" is 考核's (issue #15): an officer's row counts the cases they resolved, the
# rejections they sent back and the legal reviews they asked for. "kind" folds the cases by
# the catalogue's part, enforcement or public service (issue #21).
GroupBy = Literal["county", "township", "unit", "department", "matter", "staff", "kind"]
# The channels 回访 is taken by; each rating counts in 满意率 whichever it came by.
RATING_CHANNELS = ("web", "wechat", "hotline")
GROUP_BYS: tuple[GroupBy, ...] = (
    "county",
    "township",
    "unit",
    "department",
    "matter",
    "staff",
    "kind",
)


@dataclass(frozen=True)
class CountyScope:
    """Whose facts are counted, and under which county a fact naming none is (tenancy,
    docs/scale.md): ``readable`` the reader's counties, None for all (``county:*``)."""

    default: str
    readable: frozenset[str] | set[str] | None = None

    def key(self, county: Any) -> Any:
        """The division code of a fact's ``county`` column (NULL: the default county's)."""
        return func.coalesce(county, self.default)

    def where(self, county: Any) -> ColumnElement[bool]:
        return true() if self.readable is None else self.key(county).in_(sorted(self.readable))

    def narrowed(self, readable: frozenset[str] | None) -> CountyScope:
        """The facts a reader of ``readable`` counties may count (a token's, None for all);
        a token naming none acts for the default county, as services.runtime.auth says."""
        return replace(self, readable=readable or (None if readable is None else {self.default}))


@dataclass
class Tally:
    """The counts of each group, and its rejections by reason."""

    counts: dict[str | None, Counts] = field(default_factory=dict)
    reasons: dict[str | None, dict[str, int]] = field(default_factory=dict)

    def folded(self, key_of: Callable[[str | None], str | None]) -> Tally:
        """The same counts under coarser keys (units into their departments)."""
        out = Tally()
        for key, counts in self.counts.items():
            new = key_of(key)
            out.counts[new] = out.counts.get(new, Counts()) + counts
        for key, reasons in self.reasons.items():
            into = out.reasons.setdefault(key_of(key), {})
            for reason, n in reasons.items():
                into[reason] = into.get(reason, 0) + n
        return out


def _within(column: Any, start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(column >= start, column < end)


def _count(condition: ColumnElement[bool]) -> Any:
    return func.count().filter(condition)


def _latency_sum(latency: Any, condition: ColumnElement[bool]) -> Any:
    """Whole seconds summed over the cases meeting ``condition`` (0 when none)."""
    return func.coalesce(func.sum(func.floor(latency)).filter(condition), 0)


def _decided(answered: Any, due: Any) -> Any:
    """When an answer against a deadline counts: the answer if it came in time, else the
    deadline, whether it came late or never (LEAST skips NULLs: no deadline, the answer)."""
    return func.least(answered, due)


def _answered_or_due(
    answered: Any, due: Any, start: datetime, end: datetime, now: datetime
) -> ColumnElement[bool]:
    """Decided within the period: answered in time, or its deadline has passed by ``now``."""
    return and_(
        _within(_decided(answered, due), start, end),
        or_(answered.isnot(None), due <= now),
    )


async def tally(
    session: AsyncSession,
    period: Period,
    group_by: GroupBy,
    now: datetime,
    timezone: str,
    unit_departments: Mapping[str, str | None],
    county: CountyScope,
    matter_kinds: Mapping[str, str] | None = None,
) -> Tally:
    """Counts per group over the period (see services.ledger.kpis for what each means), of
    the facts of ``county``'s counties; ``group_by="county"`` keys them by division code.
    ``matter_kinds`` names each matter's part of the catalogue, for ``group_by="kind"``."""
    start, end = period.bounds(timezone)
    if group_by == "kind":
        # A case's counts are its matter's part of the catalogue: service requests apart from
        # enforcement cases (kpis.matter_kind says how a matter is placed).
        by_matter = await tally(session, period, "matter", now, timezone, unit_departments, county)
        return by_matter.folded(lambda matter: matter_kind(matter, matter_kinds or {}))
    if group_by == "department":
        # A unit's case counts are its department's; whistles and their chases name the
        # summoned department themselves.
        by_unit = await tally(session, period, "unit", now, timezone, unit_departments, county)
        out = by_unit.folded(lambda unit: unit_departments.get(unit) if unit else None)
        await _add_whistle_counts(session, out, start, end, now, group_by, county)
        return out
    c = KpiCase
    key: Any = {
        "county": county.key(c.county),
        "township": c.township,
        "unit": c.unit,
        "matter": c.matter,
        "staff": c.resolved_by,
    }[group_by]
    fr_decided = func.coalesce(c.first_response_stopped_at, c.first_response_due_at)
    contact_decided = _decided(c.first_contacted_at, c.first_response_due_at)
    contacted_on_time = and_(
        _within(contact_decided, start, end),
        c.first_contacted_at <= c.first_response_due_at,  # type: ignore[operator]
    )
    closed = and_(
        _within(c.closed_at, start, end),
        or_(c.reopened_at.is_(None), c.closed_at > c.reopened_at),  # type: ignore[union-attr, operator]
    )
    resolution_stopped = and_(
        _within(c.resolution_stopped_at, start, end),
        c.resolution_stop_round == c.resolution_round,
    )
    running_overdue = and_(
        _within(c.resolution_due_at, start, end),
        c.resolution_due_at <= now,  # type: ignore[operator]
        or_(
            c.resolution_stop_round.is_(None),  # type: ignore[union-attr]
            c.resolution_stop_round < c.resolution_round,  # type: ignore[operator]
        ),
    )
    opened = _within(c.opened_at, start, end)
    by_grid = c.channel == GRID_CHANNEL
    by_citizen = c.channel.in_(CITIZEN_CHANNELS)  # type: ignore[union-attr]
    by_inspection = c.channel == INSPECTION_CHANNEL
    # 发现时效: the township's first action on the case — the unit accepting it (the
    # first-response clock stopping) or contacting the citizen, whichever came first.
    first_action = func.least(c.first_response_stopped_at, c.first_contacted_at)
    discovered = and_(_within(first_action, start, end), c.reported_at.isnot(None))  # type: ignore[union-attr]
    latency = func.greatest(func.extract("epoch", first_action - c.reported_at), 0)
    columns = {
        "opened": _count(opened),
        "on_the_spot": _count(
            and_(opened, or_(c.tip_on_spot.is_(True), c.resolution == "on_the_spot"))  # type: ignore[union-attr]
        ),
        "contact_due": _count(
            and_(
                c.first_response_due_at.isnot(None),  # type: ignore[union-attr]
                _answered_or_due(c.first_contacted_at, c.first_response_due_at, start, end, now),
            )
        ),
        "contacted_on_time": _count(contacted_on_time),
        "first_response_due": _count(
            and_(
                _within(fr_decided, start, end),
                or_(
                    c.first_response_stopped_at.isnot(None),  # type: ignore[union-attr]
                    c.first_response_due_at <= now,  # type: ignore[operator]
                ),
            )
        ),
        "first_response_met": _count(
            and_(_within(c.first_response_stopped_at, start, end), c.first_response_met.is_(True))  # type: ignore[union-attr]
        ),
        "closed": _count(closed),
        "closed_resolved": _count(and_(closed, c.resolution.in_(RESOLVED_KINDS))),  # type: ignore[union-attr]
        "resolution_stopped": _count(resolution_stopped),
        "resolution_on_time": _count(and_(resolution_stopped, c.resolution_met.is_(True))),  # type: ignore[union-attr]
        "resolution_overdue": _count(and_(resolution_stopped, c.resolution_met.is_(False))),  # type: ignore[union-attr]
        "resolution_overdue_open": _count(running_overdue),
        "reported_first_by_grid": _count(and_(opened, by_grid)),
        "reported_first_by_citizen": _count(and_(opened, by_citizen)),
        "reported_first_by_inspection": _count(and_(opened, by_inspection)),
        "discovered_by_grid": _count(and_(discovered, by_grid)),
        "discovered_by_citizen": _count(and_(discovered, by_citizen)),
        "discovery_latency_seconds_grid": _latency_sum(latency, and_(discovered, by_grid)),
        "discovery_latency_seconds_citizen": _latency_sum(latency, and_(discovered, by_citizen)),
        **{
            name: _count(and_(discovered, or_(by_grid, by_citizen), latency <= bound))
            for name, bound in DISCOVERY_BUCKETS
        },
    }
    touches_period = or_(
        opened,
        _within(fr_decided, start, end),
        _within(contact_decided, start, end),
        _within(c.closed_at, start, end),
        _within(c.resolution_stopped_at, start, end),
        _within(c.resolution_due_at, start, end),
        _within(first_action, start, end),
    )
    rows = await session.execute(
        select(key.label("key"), *(v.label(k) for k, v in columns.items()))
        .where(touches_period, county.where(c.county))
        .group_by(key)
    )
    out = Tally()
    for row in rows.mappings():
        out.counts[row["key"]] = Counts(**{k: int(row[k]) for k in columns})

    r = KpiRejection
    rejection_key: Any = {
        "county": county.key(c.county),
        "township": r.township,
        "unit": r.unit,
        "matter": c.matter,
        "staff": r.staff,
    }[group_by]
    query = (
        select(rejection_key.label("key"), r.reason, func.count().label("n"))
        .select_from(r)
        .outerjoin(c, c.case_id == r.case_id)  # type: ignore[arg-type]
        .where(_within(r.at, start, end), county.where(c.county))
    )
    for row in (await session.execute(query.group_by(rejection_key, r.reason))).mappings():
        out.reasons.setdefault(row["key"], {})[row["reason"]] = row["n"]
        out.counts.setdefault(row["key"], Counts()).rejections += row["n"]

    rating = KpiRating
    satisfied = rating.rating.in_(SATISFIED)  # type: ignore[attr-defined]
    # Every rating before they carried their channel came from the citizen page.
    channel = func.coalesce(rating.channel, "web")
    query = (
        select(
            key.label("key"),
            func.count().label("rated"),
            _count(satisfied).label("satisfied"),
            *(_count(channel == ch).label(f"rated_{ch}") for ch in RATING_CHANNELS),
        )
        .select_from(rating)
        .outerjoin(c, c.case_id == rating.case_id)  # type: ignore[arg-type]
        .where(_within(rating.rated_at, start, end), county.where(c.county))
        .group_by(key)
    )
    for row in (await session.execute(query)).mappings():
        counts = out.counts.setdefault(row["key"], Counts())
        for name in ("rated", "satisfied", *(f"rated_{ch}" for ch in RATING_CHANNELS)):
            setattr(counts, name, getattr(counts, name) + row[name])
    miss = KpiFollowUpMiss
    query = (
        select(key.label("key"), func.count().label("n"))
        .select_from(miss)
        .outerjoin(c, c.case_id == miss.case_id)  # type: ignore[arg-type]
        .where(_within(miss.at, start, end), county.where(c.county))
        .group_by(key)
    )
    for row in (await session.execute(query)).mappings():
        out.counts.setdefault(row["key"], Counts()).follow_ups_unreachable += row["n"]
    await _add_legal_review_counts(session, out, start, end, group_by, county)
    if group_by in ("county", "township", "unit"):  # a unit's tasks are its department's too
        today = local_day(now, timezone)
        await _add_inspection_counts(session, out, period, today, group_by, county)
    if group_by not in ("unit", "staff"):  # whistles: the township's and departments', only
        await _add_whistle_counts(session, out, start, end, now, group_by, county)
    else:
        own = and_(KpiLadder.department.is_(None), county.where(c.county))  # type: ignore[union-attr]
        await _add_ladder_counts(session, out, start, end, key, own)
    return out


async def _add_inspection_counts(
    session: AsyncSession,
    out: Tally,
    period: Period,
    today: date,
    group_by: GroupBy,
    county: CountyScope,
) -> None:
    """Inspection tasks due in the period — planned, done, missed — and their findings."""
    task = KpiInspection
    key: Any = {"county": county.key(task.county), "township": task.township, "unit": task.unit}[
        group_by
    ]
    done = task.completed_at.isnot(None)  # type: ignore[union-attr]
    columns = {
        "inspections_planned": func.count(),
        "inspections_done": _count(done),
        "inspections_missed": _count(and_(~done, task.due_on < today)),  # type: ignore[operator]
        "inspection_findings": func.coalesce(func.sum(task.findings), 0),
    }
    query = (
        select(key.label("key"), *(v.label(k) for k, v in columns.items()))
        .where(task.due_on >= period.start, task.due_on < period.end, county.where(task.county))  # type: ignore[operator]
        .group_by(key)
    )
    for row in (await session.execute(query)).mappings():
        counts = out.counts.setdefault(row["key"], Counts())
        for name in columns:
            setattr(counts, name, getattr(counts, name) + int(row[name]))


async def _add_legal_review_counts(
    session: AsyncSession,
    out: Tally,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
    county: CountyScope,
) -> None:
    """法制审核 decided and returned, into ``out`` (an officer's: the reviews they asked for)."""
    review, c = KpiLegalReview, KpiCase
    key: Any = {
        "county": county.key(c.county),
        "township": review.township,
        "unit": review.unit,
        "matter": c.matter,
        "staff": review.staff,
    }[group_by]
    query = (
        select(
            key.label("key"),
            func.count().label("legal_reviews"),
            _count(review.approved.is_(False)).label("legal_review_returns"),  # type: ignore[attr-defined]
        )
        .select_from(review)
        .outerjoin(c, c.case_id == review.case_id)  # type: ignore[arg-type]
        .where(_within(review.at, start, end), county.where(c.county))
        .group_by(key)
    )
    for row in (await session.execute(query)).mappings():
        counts = out.counts.setdefault(row["key"], Counts())
        counts.legal_reviews += row["legal_reviews"]
        counts.legal_review_returns += row["legal_review_returns"]


async def _add_whistle_counts(
    session: AsyncSession,
    out: Tally,
    start: datetime,
    end: datetime,
    now: datetime,
    group_by: GroupBy,
    county: CountyScope,
) -> None:
    """Whistles, 报到 and replies — and the summons left unanswered past their deadlines — and
    the chases and supervisions, into ``out``."""
    w, c = KpiWhistle, KpiCase
    key: Any = {
        "county": county.key(c.county),
        "township": w.township,
        "department": w.department,
        "matter": c.matter,
    }[group_by]
    reported = _within(w.reported_at, start, end)
    replied = _within(w.replied_at, start, end)
    report_due = _answered_or_due(w.reported_at, w.receipt_due_at, start, end, now)
    reply_due = _answered_or_due(w.replied_at, w.reply_due_at, start, end, now)
    columns = {
        "whistles": _count(_within(w.blown_at, start, end)),
        "whistle_reports": _count(reported),
        "whistle_reports_due": _count(report_due),
        "whistle_reports_on_time": _count(and_(report_due, w.report_on_time.is_(True))),  # type: ignore[union-attr]
        "whistle_report_latency_seconds": func.coalesce(
            func.sum(w.report_latency_seconds).filter(reported), 0
        ),
        "whistle_replies": _count(replied),
        "whistle_replies_due": _count(reply_due),
        "whistle_replies_on_time": _count(and_(reply_due, w.reply_on_time.is_(True))),  # type: ignore[union-attr]
    }
    query = (
        select(key.label("key"), *(v.label(k) for k, v in columns.items()))
        .select_from(w)
        .outerjoin(c, c.case_id == w.case_id)  # type: ignore[arg-type]
    )
    touches = or_(
        _within(w.blown_at, start, end),
        reported,
        replied,
        _within(_decided(w.reported_at, w.receipt_due_at), start, end),
        _within(_decided(w.replied_at, w.reply_due_at), start, end),
    )
    query = query.where(touches, county.where(c.county)).group_by(key)
    for row in (await session.execute(query)).mappings():
        counts = out.counts.setdefault(row["key"], Counts())
        for name in columns:
            setattr(counts, name, getattr(counts, name) + int(row[name]))
    if group_by == "department":
        await _add_ladder_counts(
            session,
            out,
            start,
            end,
            KpiLadder.department,
            and_(KpiLadder.department.isnot(None), county.where(c.county)),  # type: ignore[union-attr]
        )
    else:
        ladder_key: Any = {
            "county": county.key(c.county),
            "township": c.township,
            "matter": c.matter,
        }
        own = county.where(c.county)
        await _add_ladder_counts(session, out, start, end, ladder_key[group_by], own)


async def _add_ladder_counts(
    session: AsyncSession,
    out: Tally,
    start: datetime,
    end: datetime,
    key: Any,
    which: ColumnElement[bool],
) -> None:
    step, c = KpiLadder, KpiCase
    query = (
        select(
            key.label("key"),
            _count(step.step == "chase").label("chases"),
            _count(step.step == "supervise").label("supervisions"),
        )
        .select_from(step)
        .outerjoin(c, c.case_id == step.case_id)  # type: ignore[arg-type]
        .where(_within(step.at, start, end), which)
        .group_by(key)
    )
    for row in (await session.execute(query)).mappings():
        counts = out.counts.setdefault(row["key"], Counts())
        counts.chases += row["chases"]
        counts.supervisions += row["supervisions"]


# --- Prometheus: bounded labels only (reference-data codes, never case or tip ids) ----------

# The KPIs are what /v1/kpis keeps to auditors and supervisors: their gauges are in a registry
# of their own, served by GET /v1/kpis/metrics to the same roles, never by the open /metrics.
KPI_REGISTRY = CollectorRegistry()
KPI_RATE = Gauge(
    "whistle_kpi_rate",
    "KPI rates of the current period (0-1); absent when the denominator is 0. "
    "Definitions: README, section KPIs",
    ["period", "group_by", "code", "rate"],
    registry=KPI_REGISTRY,
)
KPI_COUNT = Gauge(
    "whistle_kpi_count",
    "KPI counts of the current period (see README, section KPIs)",
    ["period", "group_by", "code", "count"],
    registry=KPI_REGISTRY,
)
# Units are left to the API: 255 of them times every rate and period is too many series.
METRIC_GROUPS: tuple[GroupBy, ...] = ("county", "township", "department", "matter", "kind")
METRIC_COUNTS = (
    "opened",
    "closed",
    "resolution_overdue",
    "resolution_overdue_open",
    "rejections",
    "whistles",
    "whistle_reports",
    "chases",
    "supervisions",
    "reported_first_by_grid",
    "reported_first_by_citizen",
    "discovered_by_grid",
    "discovered_by_citizen",
    "discovery_latency_seconds_grid",
    "discovery_latency_seconds_citizen",
)
OTHER, NONE = "other", "none"


def label_of(key: str | None, known: frozenset[str]) -> str:
    """A code the reference data knows, else 'other' (or 'none'): the label set stays bounded."""
    if key is None:
        return NONE
    return key if key in known else OTHER


@dataclass(frozen=True)
class MetricScope:
    timezone: str
    unit_departments: Mapping[str, str | None]
    known: Mapping[GroupBy, frozenset[str]]
    # The gauges are the city's (every county's facts, keyed by division code); a reader's
    # report narrows it to the reader's counties.
    county: CountyScope
    # Each matter's part of the dispatch catalogue: "enforcement" or "service".
    matter_kinds: Mapping[str, str] = field(default_factory=dict)


async def refresh_gauges(session: AsyncSession, scope: MetricScope, now: datetime) -> None:
    today = local_day(now, scope.timezone)
    samples: list[tuple[tuple[str, ...], float, Gauge]] = []
    for kind in PERIOD_KINDS:
        period = period_of(kind, today)
        for group_by in METRIC_GROUPS:
            result = await tally(
                session,
                period,
                group_by,
                now,
                scope.timezone,
                scope.unit_departments,
                scope.county,
                scope.matter_kinds,
            )
            known = scope.known.get(group_by, frozenset())
            merged: dict[str, Counts] = defaultdict(Counts)
            for key, counts in result.counts.items():
                code = label_of(key, known)
                merged[code] = merged[code] + counts
            for code, counts in merged.items():
                for name, rate in rates(counts).items():
                    if rate.value is not None:
                        samples.append(((kind, group_by, code, name), rate.value, KPI_RATE))
                for name in METRIC_COUNTS:
                    value = float(getattr(counts, name))
                    samples.append(((kind, group_by, code, name), value, KPI_COUNT))
    # Replaced in one step (no await in between), so a scrape never sees half a refresh.
    KPI_RATE.clear()
    KPI_COUNT.clear()
    for labels, value, gauge in samples:
        gauge.labels(*labels).set(value)


async def refresh_periodically(
    sessions: Sessions, scope: MetricScope, clock: Clock, interval: float
) -> None:
    while True:
        try:
            async with sessions() as session:
                await refresh_gauges(session, scope, clock())
        except Exception:
            log.exception("could not refresh the KPI gauges; trying again in %.0fs", interval)
        await asyncio.sleep(interval)
