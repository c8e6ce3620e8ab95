"""The county's KPIs (issue #6): what each rate means, which period a case counts in, and the
rates computed from counts. Plain data and functions; ``kpi_store`` does the counting in SQL.

Every rate is a numerator over a denominator of *counts*, and counts add up: a department's
counts are the sum of its units', the county's the sum of its townships'. A rate whose
denominator is zero has no value (``null``), never 0 % or 100 %.

Each case counts in the period of the moment that decides the measure, in the county's time
zone (``WHISTLE_TIMEZONE``, Asia/Shanghai): 2026-11-30T17:00Z is 1 December 01:00 there, so it
counts in December, the fourth quarter and 2026.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

PeriodKind = Literal["month", "quarter", "year"]
PERIOD_KINDS: tuple[PeriodKind, ...] = ("month", "quarter", "year")

# A resolution that solved the problem; "unsubstantiated" closes a case without solving one.
RESOLVED_KINDS: tuple[str, ...] = ("on_the_spot", "rectified", "penalised")
# The ratings 满意率 counts as satisfied.
SATISFIED: tuple[str, ...] = ("satisfied", "basically_satisfied")
# Who reported a problem first (liability both ways, issue #15): the township's own grid
# workers (网格员) through this channel, its units' own inspections (综合查一次, 定岗巡查) through
# the inspection channel; every other channel is a citizen's.
GRID_CHANNEL = "grid"
INSPECTION_CHANNEL = "inspection"
CITIZEN_CHANNELS = ("web", "open311", "wechat", "hotline")
# The buckets of discovery latency (seconds, cumulative "within"): counts add up where medians
# do not, and a quantile is read off them as "within this bound".
DISCOVERY_BUCKETS: tuple[tuple[str, int], ...] = (
    ("discovered_within_1h", 3600),
    ("discovered_within_4h", 4 * 3600),
    ("discovered_within_1d", 24 * 3600),
    ("discovered_within_3d", 72 * 3600),
)


@dataclass(frozen=True)
class Definition:
    name: str
    numerator: str
    denominator: str
    counted_when: str


# The one place the rates are defined; the API serves these texts and the README repeats them.
# Each is written so that it cannot be gamed (issue #15): a case closes only after its 回访, so
# closing cannot escape a rating; every channel's rating counts; a department that never
# answers its summons lowers its rate; 响应率 needs the citizen contacted, not the case accepted.
DEFINITIONS: dict[str, Definition] = {
    "response_rate": Definition(
        "响应率 (response rate)",
        "cases whose citizen the assigned unit contacted (联系群众, recorded with when and how) "
        "by the case's first-response deadline",
        "cases with a first-response deadline: contacted by it, or past it (contacted late or "
        "never; accepting the case is not contacting the citizen)",
        "the moment of the contact if it was on time, else the deadline",
    ),
    "resolution_rate": Definition(
        "解决率 (resolution rate)",
        "closed cases whose last resolution solved the problem (on the spot, rectified or "
        "penalised)",
        "closed cases (a case found unsubstantiated is closed but not resolved; a reopened case "
        "counts only once closed again)",
        "the moment the case was last closed",
    ),
    "satisfaction_rate": Definition(
        "满意率 (satisfaction rate)",
        "ratings of satisfied or basically satisfied",
        "ratings citizens gave (回访) on every channel — the citizen page, a WeChat reply, a "
        "12345 operator's follow-up call: each tip's latest rating of its case's resolution (a "
        "tip rated again after a reopening counts once, with its new rating; every citizen "
        "whose tip joined a merged case rates it). A call that reached nobody is not a rating "
        "(follow_ups_unreachable). A case closes only once rated or after the follow-up window "
        "(WHISTLE_FOLLOW_UP_DAYS), so closing it early cannot keep a rating out",
        "the moment of the rating",
    ),
    "on_time_resolution_rate": Definition(
        "按期办结率 (on-time resolution rate)",
        "resolution clocks that stopped on time",
        "resolution clocks that stopped (a reopened case: its latest round)",
        "the moment the clock stopped",
    ),
    "on_the_spot_rate": Definition(
        "即时解决率 (on-the-spot resolution rate)",
        "cases resolved on the spot: the grid worker's tip said so, or the resolution is "
        "on_the_spot",
        "cases opened",
        "the moment the case was opened",
    ),
    "whistle_report_on_time_rate": Definition(
        "报到及时率 (on-time report-in rate)",
        "summoned departments that reported in (报到) by their receipt deadline",
        "summoned departments that reported in, or whose receipt deadline passed without a "
        "报到 (a department that never reports in counts against itself); grouped by township, "
        "or by the summoned department (a whistle on two departments counts for each)",
        "the moment of the 报到 if it was on time, else the receipt deadline",
    ),
    "whistle_reply_on_time_rate": Definition(
        "答复及时率 (on-time reply rate)",
        "summoned departments that replied with the result by their reply deadline",
        "summoned departments that replied, or whose reply deadline passed without a reply",
        "the moment of the reply if it was on time, else the reply deadline",
    ),
    "citizen_first_rate": Definition(
        "群众先报率 (citizen-first share; 乡镇未及时发现)",
        "cases opened whose first report came from a citizen (12345, WeChat, the web, Open311): "
        "no grid worker or inspection of the township had reported the problem before",
        "cases opened whose first report's channel is known: a grid worker's, an inspection's "
        "(综合查一次, 定岗巡查) or a citizen's",
        "the moment the case was opened",
    ),
    "inspection_done_rate": Definition(
        "巡查完成率 (inspection completion rate)",
        "inspection tasks (综合查一次, 定岗巡查) due in the period that an officer of the unit "
        "completed, with findings or with none found (on their day or later)",
        "inspection tasks due in the period whose day has passed or that were completed: done, "
        "or missed (the day passed undone)",
        "the task's day (its due date, in the county's time zone)",
    ),
}

COUNT_DEFINITIONS: dict[str, str] = {
    "opened": "cases opened",
    "contact_due": "响应率's denominator: cases contacted by their first-response deadline, or "
    "past it, by the contact or the deadline",
    "contacted_on_time": "响应率's numerator: cases whose citizen was contacted (联系群众) by "
    "the first-response deadline, by the contact",
    "first_response_due": "first-response clocks that stopped (the unit accepted, 接单) or fell "
    "due without stopping, by the stop or the due time; not 响应率, which needs the contact",
    "first_response_met": "first-response clocks stopped on time (accepted by the deadline)",
    "resolution_overdue": "resolution clocks that stopped late (超期办结), by the stop",
    "resolution_overdue_open": "resolution clocks past due and still running, by the due time",
    "rejections": "退单: rejections by the assigned unit, by the rejection, with their reasons",
    "rated_web": "ratings given on the citizen page (and every rating recorded before ratings "
    "carried their channel), by the rating",
    "rated_wechat": "ratings given by a WeChat reply, by the rating",
    "rated_hotline": "ratings recorded from a 12345 follow-up call, by the rating",
    "follow_ups_unreachable": "12345 follow-up calls that could not reach the citizen (not "
    "ratings), by the call",
    "whistles": "吹哨: departments summoned, one per department per whistle, by when it was blown",
    "whistle_reports": "报到: summoned departments that reported in, by the 报到",
    "whistle_reports_due": "报到及时率's denominator: summoned departments that reported in on "
    "time, by the 报到, or whose receipt deadline passed (reported late or never), by the "
    "deadline",
    "whistle_report_latency_seconds": "the summed time from the summons to each 报到 (see the "
    "average whistle_report_latency_avg_seconds)",
    "whistle_replies": "summoned departments that replied with the result, by the reply",
    "whistle_replies_due": "答复及时率's denominator: replies on time, by the reply, and reply "
    "deadlines passed (replied late or never), by the deadline",
    "chases": "催办 fired, by when it fired: of a case's clocks (the case's township, unit and its "
    "department) and of whistle clocks (the summoned department; not a unit); not of a legal "
    "review's clock (法制审核: the legal office's, in the trail only)",
    "supervisions": "督办 fired, by when it fired, counted like chases",
    "reported_first_by_grid": "cases opened whose first report (the tip the case was opened "
    "for) was a grid worker's, by the opening",
    "reported_first_by_citizen": "cases opened whose first report was a citizen's: the "
    "township had not found the problem itself (群众先报率's numerator), by the opening",
    "reported_first_by_inspection": "cases opened whose first report was a finding of a "
    "unit's inspection task (channel inspection: 综合查一次, 定岗巡查), by the opening; not a "
    "citizen's, nor a grid worker's",
    "inspections_planned": "inspection tasks (one per unit, plan and day) due in the period, "
    "by their day",
    "inspections_done": "inspection tasks due in the period that were completed (findings or "
    "none found), by their day",
    "inspections_missed": "inspection tasks due in the period whose day has passed without "
    "their being completed, by their day (a task completed late counts as done, not missed)",
    "inspection_findings": "findings recorded by the inspection tasks due in the period (each "
    "became a tip on channel inspection), by the task's day",
    "discovered_by_grid": "发现时效: cases first reported by a grid worker on which the "
    "township first acted (the unit accepted the case or contacted the citizen, whichever came "
    "first), by that first action",
    "discovered_by_citizen": "发现时效: cases first reported by a citizen on which the township "
    "first acted, by that first action",
    "discovery_latency_seconds_grid": "the summed time from the first report to the township's "
    "first action, of discovered_by_grid (see discovery_latency_avg_seconds)",
    "discovery_latency_seconds_citizen": "the same, of discovered_by_citizen",
    "discovered_within_1h": "cases discovered (either reporter) whose first action came within "
    "1 hour of the first report; likewise _4h, _1d and _3d (cumulative: a case within 1 hour is "
    "within 4 hours too); the median and p90 are read off these as 'within'",
    "discovered_within_4h": "see discovered_within_1h",
    "discovered_within_1d": "see discovered_within_1h",
    "discovered_within_3d": "see discovered_within_1h",
    "legal_reviews": "法制审核 decided (approved or returned), by the decision; with "
    "group_by=staff, counted for the officer who asked for the review",
    "legal_review_returns": "法制审核 returned with an opinion (the decision did not stand as "
    "proposed), by the decision; counted like legal_reviews",
}


# group_by=kind: the ledger's figures for the two parts of the dispatch catalogue, apart. A
# street light mended is a public service delivered, not an enforcement case: the county's
# enforcement figures (and 行政执法公示) count only the first.
KIND_DEFINITIONS: dict[str, str] = {
    "enforcement": "enforcement cases: cases whose matter is on the enforcement list (事项清单: "
    "a legal basis, an authority type, certified officers), or a matter the current catalogue "
    "no longer lists (every matter before the service part was one)",
    "service": "service requests (公共服务诉求): cases whose matter is in the catalogue's public-"
    "service part (a street light, a water outage), handled by a service station, utility or "
    "county department without enforcement",
    "null": "cases not yet given a matter (waiting in triage)",
}


def matter_kind(matter: str | None, kinds: Mapping[str, str]) -> str | None:
    """The part of the catalogue a case of ``matter`` counts in (see KIND_DEFINITIONS)."""
    if matter is None:
        return None
    return kinds.get(matter, "enforcement")


@dataclass(frozen=True)
class Period:
    kind: PeriodKind
    start: date  # first day, inclusive
    end: date  # first day of the next period, exclusive

    @property
    def label(self) -> str:
        if self.kind == "month":
            return f"{self.start:%Y-%m}"
        if self.kind == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return str(self.start.year)

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """The period as instants: local midnight at either end."""
        zone = ZoneInfo(timezone)
        return (
            datetime.combine(self.start, time(), zone),
            datetime.combine(self.end, time(), zone),
        )


def period_of(kind: PeriodKind, day: date) -> Period:
    """The month, quarter or year (月调度, 季分析, 年总结) holding ``day``."""
    if kind == "month":
        first_month, months = day.month, 1
    elif kind == "quarter":
        first_month, months = (day.month - 1) // 3 * 3 + 1, 3
    elif kind == "year":
        first_month, months = 1, 12
    else:
        raise ValueError(f"unknown period {kind!r}")
    start = date(day.year, first_month, 1)
    following = first_month - 1 + months
    return Period(kind, start, date(day.year + following // 12, following % 12 + 1, 1))


def local_day(instant: datetime, timezone: str) -> date:
    return instant.astimezone(ZoneInfo(timezone)).date()


@dataclass
class Counts:
    """What the rates are computed from, for one group in one period. Adds up."""

    opened: int = 0
    on_the_spot: int = 0
    contact_due: int = 0  # contacted by the first-response deadline, or past it
    contacted_on_time: int = 0
    first_response_due: int = 0  # stopped, or fell due without stopping
    first_response_met: int = 0
    closed: int = 0
    closed_resolved: int = 0
    rated: int = 0
    satisfied: int = 0
    rated_web: int = 0
    rated_wechat: int = 0
    rated_hotline: int = 0
    follow_ups_unreachable: int = 0
    resolution_stopped: int = 0
    resolution_on_time: int = 0
    resolution_overdue: int = 0
    resolution_overdue_open: int = 0
    rejections: int = 0
    whistles: int = 0
    whistle_reports: int = 0
    whistle_reports_due: int = 0  # reported on time, or the receipt deadline passed
    whistle_reports_on_time: int = 0
    whistle_report_latency_seconds: int = 0
    whistle_replies: int = 0
    whistle_replies_due: int = 0  # replied on time, or the reply deadline passed
    whistle_replies_on_time: int = 0
    chases: int = 0
    supervisions: int = 0
    reported_first_by_grid: int = 0
    reported_first_by_citizen: int = 0
    reported_first_by_inspection: int = 0
    discovered_by_grid: int = 0
    discovered_by_citizen: int = 0
    discovery_latency_seconds_grid: int = 0
    discovery_latency_seconds_citizen: int = 0
    discovered_within_1h: int = 0
    discovered_within_4h: int = 0
    discovered_within_1d: int = 0
    discovered_within_3d: int = 0
    legal_reviews: int = 0
    legal_review_returns: int = 0
    inspections_planned: int = 0
    inspections_done: int = 0
    inspections_missed: int = 0
    inspection_findings: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True)
class Rate:
    value: float | None
    numerator: int
    denominator: int
    note: str | None = None


def _rate(numerator: int, denominator: int, empty: str = "no cases") -> Rate:
    if denominator == 0:
        return Rate(None, numerator, denominator, empty)
    return Rate(numerator / denominator, numerator, denominator)


def response_rate(c: Counts) -> Rate:
    return _rate(c.contacted_on_time, c.contact_due)


def resolution_rate(c: Counts) -> Rate:
    return _rate(c.closed_resolved, c.closed)


def satisfaction_rate(c: Counts) -> Rate:
    return _rate(c.satisfied, c.rated, "no ratings")


def on_time_resolution_rate(c: Counts) -> Rate:
    return _rate(c.resolution_on_time, c.resolution_stopped)


def on_the_spot_rate(c: Counts) -> Rate:
    return _rate(c.on_the_spot, c.opened)


def whistle_report_on_time_rate(c: Counts) -> Rate:
    return _rate(c.whistle_reports_on_time, c.whistle_reports_due, "no 报到 due")


def whistle_reply_on_time_rate(c: Counts) -> Rate:
    return _rate(c.whistle_replies_on_time, c.whistle_replies_due, "no replies due")


def report_latency_avg_seconds(c: Counts) -> float | None:
    """The mean time from a department's summons to its 报到; None without any 报到."""
    return c.whistle_report_latency_seconds / c.whistle_reports if c.whistle_reports else None


def citizen_first_rate(c: Counts) -> Rate:
    township_first = c.reported_first_by_grid + c.reported_first_by_inspection
    return _rate(c.reported_first_by_citizen, township_first + c.reported_first_by_citizen)


def inspection_done_rate(c: Counts) -> Rate:
    return _rate(c.inspections_done, c.inspections_done + c.inspections_missed, "no tasks due")


@dataclass(frozen=True)
class Discovery:
    """发现时效 of one group: the mean latency per first reporter and, from the buckets, the
    bound within which half (p50) and nine in ten (p90) of the cases were acted on (None: no
    case, or beyond the last bucket — say "over 3 days")."""

    avg_seconds_grid: float | None
    avg_seconds_citizen: float | None
    p50_within_seconds: int | None
    p90_within_seconds: int | None


def _within_bound(c: Counts, share: float) -> int | None:
    total = c.discovered_by_grid + c.discovered_by_citizen
    if total == 0:
        return None
    for name, bound in DISCOVERY_BUCKETS:
        if getattr(c, name) >= share * total:
            return bound
    return None


def discovery(c: Counts) -> Discovery:
    grid, citizen = c.discovered_by_grid, c.discovered_by_citizen
    return Discovery(
        avg_seconds_grid=c.discovery_latency_seconds_grid / grid if grid else None,
        avg_seconds_citizen=c.discovery_latency_seconds_citizen / citizen if citizen else None,
        p50_within_seconds=_within_bound(c, 0.5),
        p90_within_seconds=_within_bound(c, 0.9),
    )


RATES = {
    "response_rate": response_rate,
    "resolution_rate": resolution_rate,
    "satisfaction_rate": satisfaction_rate,
    "on_time_resolution_rate": on_time_resolution_rate,
    "on_the_spot_rate": on_the_spot_rate,
    "whistle_report_on_time_rate": whistle_report_on_time_rate,
    "whistle_reply_on_time_rate": whistle_reply_on_time_rate,
    "citizen_first_rate": citizen_first_rate,
    "inspection_done_rate": inspection_done_rate,
}


def rates(c: Counts) -> dict[str, Rate]:
    return {name: rate(c) for name, rate in RATES.items()}
