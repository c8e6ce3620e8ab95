"""``GET /v1/kpis``: the county's rates and counts per group for a month, quarter or year."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from services.ledger.kpi_store import KPI_REGISTRY, GroupBy, MetricScope, tally
from services.ledger.kpis import (
    COUNT_DEFINITIONS,
    DEFINITIONS,
    KIND_DEFINITIONS,
    Definition,
    PeriodKind,
    discovery,
    local_day,
    period_of,
    rates,
    report_latency_avg_seconds,
)
from services.runtime.auth import Principal, require_roles
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["kpis"])


class PeriodOut(BaseModel):
    kind: PeriodKind
    label: str
    start: date
    end: date  # exclusive
    timezone: str


class RateOut(BaseModel):
    value: float | None
    numerator: int
    denominator: int
    note: str | None = None


class ReasonCount(BaseModel):
    reason: str
    count: int


class DiscoveryOut(BaseModel):
    """发现时效 (see services.ledger.kpis.Discovery): means per first reporter, and the bounds
    (seconds) within which half and nine in ten of the cases were first acted on."""

    avg_seconds_grid: float | None
    avg_seconds_citizen: float | None
    p50_within_seconds: int | None
    p90_within_seconds: int | None


class GroupOut(BaseModel):
    key: str | None
    counts: dict[str, int]
    rates: dict[str, RateOut]
    whistle_report_latency_avg_seconds: float | None
    discovery: DiscoveryOut
    rejections_by_reason: list[ReasonCount]


class DefinitionOut(BaseModel):
    name: str
    numerator: str
    denominator: str
    counted_when: str

    @classmethod
    def of(cls, d: Definition) -> DefinitionOut:
        return cls(
            name=d.name,
            numerator=d.numerator,
            denominator=d.denominator,
            counted_when=d.counted_when,
        )


class KpiReport(BaseModel):
    period: PeriodOut
    group_by: GroupBy
    groups: list[GroupOut]
    definitions: dict[str, DefinitionOut]
    count_definitions: dict[str, str]
    kind_definitions: dict[str, str] = Field(
        description="what group_by=kind's keys mean: enforcement cases apart from service requests"
    )


KPI_READERS = ("auditor", "county_supervisor")


@router.get("/kpis/metrics", include_in_schema=False)
async def kpi_metrics(_: Annotated[Principal, Depends(require_roles(*KPI_READERS))]) -> Response:
    """The ``whistle_kpi_*`` gauges for Prometheus, to the roles that may read /v1/kpis (a
    scrape job with ``authorization``; the open /metrics carries none of them)."""
    return Response(generate_latest(KPI_REGISTRY), media_type=CONTENT_TYPE_LATEST)


# The days a period may be asked for: its bounds, as instants in the county's time zone, must
# be dates PostgreSQL and Python hold (year 1 begins before UTC's year 1 east of Greenwich, and
# the year after 9999 does not exist); no event was recorded outside these years anyway.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


@router.get("/kpis", response_model=KpiReport)
async def kpis(
    principal: Annotated[Principal, Depends(require_roles(*KPI_READERS))],
    runtime: RuntimeDep,
    period: PeriodKind = "month",
    at: Annotated[
        date | None,
        Query(
            ge=FIRST_DAY,
            le=LAST_DAY,
            description="a day in the period (YYYY-MM-DD); today if omitted",
        ),
    ] = None,
    group_by: GroupBy = "county",
) -> KpiReport:
    """三率 and the rest of issue #6 for the month, quarter or year holding ``at``, in the
    county's time zone, of the facts of the token's counties (``county:*``: all of them;
    ``group_by=county`` keys each by its division code). A rate whose denominator is 0 is
    null, with a note."""
    scope: MetricScope = runtime.state["kpi_scope"]
    now = runtime.clock()
    chosen = period_of(period, at or local_day(now, scope.timezone))
    async with runtime.sessions() as session:
        result = await tally(
            session,
            chosen,
            group_by,
            now,
            scope.timezone,
            scope.unit_departments,
            scope.county.narrowed(principal.counties()),
            scope.matter_kinds,
        )
    groups = [
        GroupOut(
            key=key,
            counts=counts.as_dict(),
            rates={name: RateOut(**vars(rate)) for name, rate in rates(counts).items()},
            whistle_report_latency_avg_seconds=report_latency_avg_seconds(counts),
            discovery=DiscoveryOut(**vars(discovery(counts))),
            rejections_by_reason=[
                ReasonCount(reason=reason, count=n)
                for reason, n in sorted(
                    result.reasons.get(key, {}).items(), key=lambda item: (-item[1], item[0])
                )
            ],
        )
        for key, counts in sorted(
            result.counts.items(), key=lambda kv: (kv[0] is None, kv[0] or "")
        )
    ]
    return KpiReport(
        period=PeriodOut(
            kind=chosen.kind,
            label=chosen.label,
            start=chosen.start,
            end=chosen.end,
            timezone=scope.timezone,
        ),
        group_by=group_by,
        groups=groups,
        definitions={name: DefinitionOut.of(d) for name, d in DEFINITIONS.items()},
        count_definitions=COUNT_DEFINITIONS,
        kind_definitions=KIND_DEFINITIONS,
    )
