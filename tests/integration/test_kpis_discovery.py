"""Liability both ways (issue #15, item 3): how soon a township acts on a problem after its first
report (发现时效), split by who reported it first — its own grid workers or citizens — and the
share of problems citizens reported before any grid worker did (群众先报率). Real CloudEvents
through the real Recorder into a freshly migrated ledger, then ``GET /v1/kpis`` and the gauges;
the figures are worked out by hand in the docstring."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest

from contracts.envelope import CloudEvent
from contracts.events import CaseAccepted, CaseContacted
from services.ledger.kpi_store import refresh_gauges
from services.ledger.kpis import DEFINITIONS
from services.runtime.db import Sessions
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_kpis import (
    NOW,
    QINGXI,
    TEAM,
    Script,
    at,
    auth,
    groups,
    kpis,
    record,
    report,
    script,
    sessions,
    value,
)

__all__ = ["kpis", "sessions"]  # the fixtures, shared with test_kpis.py

HOUR = 3600


def opened(s: Script, when: datetime) -> list[CloudEvent]:
    """Opened and assigned at ``when``, its first-response deadline two days later."""
    return [
        s.opened(when),
        s.assigned(when, TEAM),
        s.deadlines(when, when + timedelta(days=2), when + timedelta(days=7)),
    ]


def accepted(s: Script, when: datetime, opened_at: datetime) -> list[CloudEvent]:
    """接单 at ``when``: the first-response clock stops."""
    due = opened_at + timedelta(days=2)
    return [s.step(CaseAccepted, when, TEAM, 2), s.stopped("first_response", due, when)]


def contacted(s: Script, when: datetime) -> CloudEvent:
    return s.step(CaseContacted, when, TEAM, 2, contacted_at=when, method="phone")


async def test_discovery_latency_and_citizen_first_share_of_a_scripted_month(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026 (Asia/Shanghai); first report = the tip the case was opened for:

    G1 T03 grid tip 3 Dec 02:00Z, accepted 1 h later                     → grid, 1 h
    G2 T03 grid tip 4 Dec, citizen contacted after 3 h, accepted after 6 h → grid, 3 h
    C1 T03 web tip 5 Dec, accepted after 24 h                            → citizen, 24 h
    C2 T03 hotline tip 6 Dec (recorded after its case), contacted after 48 h → citizen, 48 h
    C3 T03 WeChat tip 7 Dec, never acted on                              → opened, not discovered
    C4 T03 web tip 30 Nov (opened in November), accepted 1 Dec 02:00Z   → citizen, 24 h,
       discovered in December (by the first action), first reported in November
    X  T05 grid tip 9 Dec, accepted after 8 h                            → grid, 8 h
    Y  T03 opened 10 Dec without any tip recorded, accepted              → neither

    opened, first report by grid: G1 G2 X = 3; by citizen: C1 C2 C3 = 3
        群众先报率 county 3/6; T03 3/5; T05 0/1
    discovered by grid: G1 G2 X = 3, 1+3+8 = 12 h (avg 4 h); by citizen: C1 C2 C4 = 3,
        24+48+24 = 96 h (avg 32 h)
    within 1 h: 1 (G1); 4 h: 2; 1 d: 5 (+X C1 C4); 3 d: 6 → p50 within 1 d, p90 within 3 d
    T03: grid G1 G2, 4 h (avg 2 h); citizen the same three as the county
    """
    g1, g2, c1, c2, c3, c4, y = (script() for _ in range(7))
    x = script(township="T05")
    await record(
        sessions, [g1.tip(at(3), "grid"), *opened(g1, at(3)), *accepted(g1, at(3, 3), at(3))]
    )
    await record(
        sessions,
        [
            g2.tip(at(4), "grid"),
            *opened(g2, at(4)),
            contacted(g2, at(4, 5)),
            *accepted(g2, at(4, 8), at(4)),
        ],
    )
    await record(sessions, [c1.tip(at(5)), *opened(c1, at(5)), *accepted(c1, at(6), at(5))])
    await record(sessions, [*opened(c2, at(6)), contacted(c2, at(8))])
    await record(sessions, [c2.tip(at(6), "hotline")])  # the tip arrives after its case
    await record(sessions, [c3.tip(at(7), "wechat"), *opened(c3, at(7))])
    november = at(30, month=11)
    await record(sessions, [c4.tip(november), *opened(c4, november)])
    await record(sessions, accepted(c4, at(1), november))
    await record(
        sessions, [x.tip(at(9), "grid"), *opened(x, at(9)), *accepted(x, at(9, 10), at(9))]
    )
    await record(sessions, [*opened(y, at(10)), *accepted(y, at(10, 3), at(10))])
    client, runtime = kpis

    body = await report(client, token, period="month", at="2026-12-01")
    [county] = body["groups"]
    counts = county["counts"]
    assert (counts["reported_first_by_grid"], counts["reported_first_by_citizen"]) == (3, 3)
    assert value(county, "citizen_first_rate") == (pytest.approx(0.5), 3, 6)
    assert (counts["discovered_by_grid"], counts["discovered_by_citizen"]) == (3, 3)
    assert counts["discovery_latency_seconds_grid"] == 12 * HOUR
    assert counts["discovery_latency_seconds_citizen"] == 96 * HOUR
    assert [counts[f"discovered_within_{b}"] for b in ("1h", "4h", "1d", "3d")] == [1, 2, 5, 6]
    assert county["discovery"] == {
        "avg_seconds_grid": 4 * HOUR,
        "avg_seconds_citizen": 32 * HOUR,
        "p50_within_seconds": 24 * HOUR,
        "p90_within_seconds": 72 * HOUR,
    }
    definition = body["definitions"]["citizen_first_rate"]
    assert definition["name"] == DEFINITIONS["citizen_first_rate"].name
    assert "grid worker" in definition["numerator"]

    by_township = groups(await report(client, token, at="2026-12-01", group_by="township"))
    t03, t05 = by_township["T03"], by_township["T05"]
    assert value(t03, "citizen_first_rate") == (pytest.approx(0.6), 3, 5)
    assert value(t05, "citizen_first_rate") == (0.0, 0, 1)
    assert t03["discovery"]["avg_seconds_grid"] == 2 * HOUR
    assert t03["discovery"]["avg_seconds_citizen"] == 32 * HOUR
    assert t05["counts"]["discovery_latency_seconds_grid"] == 8 * HOUR
    # Counts add up: the townships' are the county's.
    for name in ("discovered_by_grid", "discovered_by_citizen", "discovered_within_1d"):
        assert t03["counts"][name] + t05["counts"][name] == counts[name]

    # November: C4 was first reported by a citizen then, and not yet acted on.
    [november_county] = (await report(client, token, at="2026-11-15"))["groups"]
    assert november_county["counts"]["reported_first_by_citizen"] == 1
    assert november_county["counts"]["discovered_by_citizen"] == 0
    assert november_county["discovery"]["p50_within_seconds"] is None

    async with sessions() as session:
        await refresh_gauges(session, runtime.state["kpi_scope"], NOW)
    response = await client.get("/v1/kpis/metrics", headers=auth(token))
    text = response.text
    month = 'period="month"'
    assert (
        f'whistle_kpi_rate{{code="T03",group_by="township",{month},rate="citizen_first_rate"}} 0.6'
        in text
    )
    assert (
        f'whistle_kpi_count{{code="{QINGXI}",count="discovered_by_grid",group_by="county",{month}}}'
        " 3.0" in text
    )
