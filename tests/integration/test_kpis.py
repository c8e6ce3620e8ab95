"""The KPIs of issue #6 over a scripted set of cases: real CloudEvents through the real Recorder
into a freshly migrated ledger database, then ``GET /v1/kpis`` and the Prometheus gauges. The
expected rates are worked out by hand next to the script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest
from sqlalchemy import select

from contracts.envelope import CloudEvent, new_event
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseChased,
    CaseClosed,
    CaseContacted,
    CaseMerged,
    CaseOpened,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSupervised,
    Deadline,
    DeadlinesSet,
    DeadlineStopped,
    TipRated,
    TipReceived,
    WhistleBlown,
    WhistleReplied,
    WhistleReported,
)
from reference.county import load_reference
from services.ledger import kpi_api
from services.ledger.app import kpi_scope
from services.ledger.kpi_store import refresh_gauges
from services.ledger.kpis import period_of
from services.ledger.models import CaseTip, KpiCase
from services.ledger.recorder import Recorder
from services.runtime.auth import TokenVerifier
from services.runtime.db import Sessions, create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.problems import install_problem_handlers
from services.runtime.retention import RetentionJob
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.infra import Infra

PROBLEM = "application/problem+json"
NOW = datetime(2026, 12, 20, 4, tzinfo=UTC)  # 12:00 on 20 December in Asia/Shanghai
# The default county (deploy/config): the whole county's group is keyed by its division code.
QINGXI = "140999"
REASON = "不属于本单位职责"


@pytest.fixture
async def sessions(infra: Infra) -> AsyncIterator[Sessions]:
    url = infra.fresh_database_url("ledger")
    await ensure_database(url)
    await upgrade("ledger", url)
    engine = create_engine(url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


async def record(sessions: Sessions, events: list[CloudEvent]) -> None:
    """One transaction, as the inbox applies a batch."""
    recorder = Recorder(lambda: NOW)
    async with sessions() as session, session.begin():
        for event in events:
            await recorder(session, event, "test.topic.v1")
        await recorder.flush(session)


@dataclass
class Script:
    """Builds a case's events; each event is stamped with the time given."""

    case_id: UUID
    tip_id: UUID
    township: str
    matter: str

    def tip(self, at: datetime, channel: str = "web", on_spot: bool = False) -> CloudEvent:
        data = TipReceived(
            tip_id=self.tip_id,
            tracking_no=f"QX{self.tip_id.hex[:6]}",
            channel=channel,  # type: ignore[arg-type]
            text="占道经营",
            resolved_on_spot=on_spot,
            resolution_note="已劝离" if on_spot else None,
            received_at=at,
        )
        return new_event("whistle/intake", str(self.tip_id), data, at)

    def _case(self, data: Any, at: datetime) -> CloudEvent:
        return new_event("whistle/test", str(self.case_id), data, at)

    def opened(self, at: datetime) -> CloudEvent:
        data = CaseOpened(
            case_id=self.case_id,
            tip_id=self.tip_id,
            matter_code=self.matter,
            confidence=0.9,
            township_code=self.township,
            urgency="general",
            catalogue_version="v",
            explanation=[],
        )
        return self._case(data, at)

    def assigned(self, at: datetime, unit: str) -> CloudEvent:
        data = CaseAssigned(
            case_id=self.case_id,
            tip_id=self.tip_id,
            unit_id=unit,
            unit_kind="township_team",
            township_code=self.township,
            staff_id=None,
            matter_code=self.matter,
            authority="statutory",
            urgency="general",
            deadline_policy="P-GENERAL",
            catalogue_version="v",
            rule="test",
            explanation=[],
        )
        return self._case(data, at)

    def deadlines(
        self, at: datetime, first: datetime | None, resolution: datetime, round_: int = 1
    ) -> CloudEvent:
        clocks = [Deadline(kind="resolution", due_at=resolution, warn_at=resolution, round=round_)]
        if first is not None:
            clocks.insert(0, Deadline(kind="first_response", due_at=first, warn_at=first))
        data = DeadlinesSet(
            case_id=self.case_id, policy_id="P-GENERAL", urgency="general", deadlines=clocks
        )
        return new_event("whistle/escalation", str(self.case_id), data, at)

    def stopped(self, kind: str, due: datetime, at: datetime, round_: int = 1) -> CloudEvent:
        late = max(0, int((at - due).total_seconds()))
        data = DeadlineStopped(
            case_id=self.case_id,
            kind=kind,  # type: ignore[arg-type]
            round=round_,
            due_at=due,
            stopped_at=at,
            on_time=late == 0,
            late_by_seconds=late,
            stopped_by="test",
        )
        return new_event("whistle/escalation", str(self.case_id), data, at)

    def step(
        self,
        model: Any,
        at: datetime,
        unit: str | None,
        version: int,
        actor: str = "S0001",
        **extra: Any,
    ) -> CloudEvent:
        data = model(
            case_id=self.case_id,
            tip_id=self.tip_id,
            actor=actor,
            actor_role="unit",
            version=version,
            township_code=self.township,
            unit_id=unit,
            **extra,
        )
        return self._case(data, at)


def at(day: int, hour: int = 2, month: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def lifecycle(
    s: Script,
    opened: datetime,
    unit: str,
    first_response_late: bool,
    resolution: str,
    resolution_late: bool,
) -> list[CloudEvent]:
    """Opened, assigned, accepted and the citizen contacted at once (联系群众), resolved and
    closed, its clocks stopping as said."""
    first_due, resolution_due = opened + timedelta(days=1), opened + timedelta(days=7)
    accepted = first_due + timedelta(hours=2 if first_response_late else -2)
    resolved = resolution_due + timedelta(hours=5 if resolution_late else -5)
    return [
        s.opened(opened),
        s.assigned(opened, unit),
        s.deadlines(opened, first_due, resolution_due),
        s.step(CaseAccepted, accepted, unit, 2),
        s.step(CaseContacted, accepted, unit, 2, contacted_at=accepted, method="phone"),
        s.stopped("first_response", first_due, accepted),
        s.step(CaseResolved, resolved, unit, 3, resolution=resolution, note="办结"),
        s.stopped("resolution", resolution_due, resolved),
        s.step(CaseClosed, resolved + timedelta(hours=1), unit, 4),
    ]


def script(township: str = "T03", matter: str = "SC-001") -> Script:
    return Script(uuid4(), uuid4(), township, matter)


TEAM, SQUAD = "T03-TEAM", "T03-CGJ"  # the township's own team; the 城管 squad (dept CGJ)


async def record_the_scripted_cases(sessions: Sessions) -> dict[str, Script]:
    """December 2026 in Asia/Shanghai, worked out by hand:

    A  grid tip fixed on the spot; opened 2026-11-30T17:00Z = 1 Dec 01:00 local, so December.
       First response met, resolved on the spot on time, closed.              (TEAM)
    B  first response late; rectified, late (超期); closed.                    (TEAM)
    C  first response met; unsubstantiated, on time; closed.                   (SQUAD)
    D  rejected once by SQUAD (REASON), reassigned to TEAM; first response met;
       penalised on time, closed, then reopened: not closed any more, and its round-2
       resolution clock is still running (due after NOW).                      (TEAM)
    E  in T05: its first-response clock fell due on 5 Dec and never stopped; its resolution
       clock fell due on 12 Dec and is still running.                          (no unit)
    F  opened 2026-11-30T15:59Z = 23:59 local on 30 November: November, not December.

    响应率 (T03+T05): contacted in time A, C, D = 3 / contacted or due A, B, C, D, E = 5 → 60 %
                      T03 alone: 3 / 4 = 75 %; T05: 0 / 1 = 0 %
    解决率: closed A, B, C = 3 (D reopened); resolved A, B = 2 (C unsubstantiated) → 2/3
    按期办结率: stopped (latest round) A, B, C = 3; on time A, C = 2 → 2/3; overdue 1 (B)
    running overdue: E = 1
    即时解决率: on the spot A = 1 / opened A–E = 5 → 20 %
    退单: 1, REASON, by SQUAD (department CGJ) in T03
    """
    a, b, c, d = script(), script(), script(), script(matter="SC-002")
    e, f = script(township="T05"), script()
    a_open = datetime(2026, 11, 30, 17, tzinfo=UTC)
    # A's case events first, its tip in a later transaction (the tip comes last).
    await record(sessions, lifecycle(a, a_open, TEAM, False, "on_the_spot", False))
    await record(sessions, [a.tip(a_open - timedelta(minutes=5), "grid", on_spot=True)])
    # B's tip first, in the same batch as its case.
    await record(
        sessions, [b.tip(at(2), "hotline"), *lifecycle(b, at(2), TEAM, True, "rectified", True)]
    )
    await record(
        sessions, [c.tip(at(3)), *lifecycle(c, at(3), SQUAD, False, "unsubstantiated", False)]
    )
    d_events = lifecycle(d, at(4), TEAM, False, "penalised", False)
    rejected = d.step(
        CaseRejected, at(4, 3), SQUAD, 2, reason=REASON, rejections=1, queue="township:T03"
    )
    reopened_at = at(15)
    await record(
        sessions,
        [
            d.tip(at(4)),
            d.opened(at(4)),
            d.assigned(at(4), SQUAD),
            rejected,
            *d_events[1:],
            d.step(CaseReopened, reopened_at, TEAM, 6, reason="群众不满意"),
        ],
    )
    # D's round-2 resolution clock: escalation's event may come after the reopening.
    await record(sessions, [d.deadlines(reopened_at, None, at(25), round_=2)])
    await record(sessions, [e.tip(at(4)), e.opened(at(4)), e.deadlines(at(4), at(5), at(12))])
    await record(
        sessions,
        [f.tip(at(30, 15, month=11)), f.opened(datetime(2026, 11, 30, 15, 59, tzinfo=UTC))],
    )
    return {"A": a, "B": b, "C": c, "D": d, "E": e, "F": f}


@asynccontextmanager
async def ledger_router(
    sessions: Sessions, settings: Settings, router: APIRouter
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """One ledger router in process, on the scripted database, with the clock at NOW and the
    reference data and KPI scope in its state."""
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    reference = load_reference(settings.config_dir)
    runtime = Runtime(
        service="ledger",
        settings=settings,
        clock=lambda: NOW,
        engine=None,  # type: ignore[arg-type]
        sessions=sessions,
        producer=None,  # type: ignore[arg-type]
        relay=None,  # type: ignore[arg-type]
        verifier=TokenVerifier(
            settings.public_key_path.read_bytes(),
            issuer=settings.jwt_issuer,
            audience=settings.audience_of("ledger"),
        ),
        retention=RetentionJob("ledger", lambda: NOW, timedelta(days=1)),
        state={"kpi_scope": kpi_scope(reference, settings.timezone), "reference": reference},
    )
    app.state.runtime = runtime
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, runtime


@pytest.fixture
async def kpis(
    sessions: Sessions, settings: Settings
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The KPI router in process, on the scripted database, with the clock at NOW."""
    async with ledger_router(sessions, settings, kpi_api.router) as pair:
        yield pair


def auth(token: TokenFactory, role: str = "auditor") -> dict[str, str]:
    return {"authorization": f"Bearer {token(role)}"}


async def report(client: httpx.AsyncClient, token: TokenFactory, **params: str) -> dict[str, Any]:
    response = await client.get("/v1/kpis", params=params, headers=auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def groups(body: dict[str, Any]) -> dict[str | None, dict[str, Any]]:
    return {g["key"]: g for g in body["groups"]}


def value(group: dict[str, Any], rate: str) -> tuple[float | None, int, int]:
    r = group["rates"][rate]
    return r["value"], r["numerator"], r["denominator"]


async def test_the_rates_of_a_scripted_month(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    await record_the_scripted_cases(sessions)
    client, _ = kpis

    county = await report(client, token, period="month", at="2026-12-20", group_by="county")
    assert county["period"] == {
        "kind": "month",
        "label": "2026-12",
        "start": "2026-12-01",
        "end": "2027-01-01",
        "timezone": "Asia/Shanghai",
    }
    [whole] = county["groups"]
    assert whole["key"] == QINGXI  # the county, by its division code
    assert value(whole, "response_rate") == (pytest.approx(3 / 5), 3, 5)
    assert value(whole, "resolution_rate") == (pytest.approx(2 / 3), 2, 3)
    assert value(whole, "on_time_resolution_rate") == (pytest.approx(2 / 3), 2, 3)
    assert value(whole, "on_the_spot_rate") == (pytest.approx(1 / 5), 1, 5)
    assert whole["rates"]["satisfaction_rate"] == {
        "value": None,
        "numerator": 0,
        "denominator": 0,
        "note": "no ratings",
    }
    assert whole["counts"]["opened"] == 5  # F is November's
    assert whole["counts"]["resolution_overdue"] == 1
    assert whole["counts"]["resolution_overdue_open"] == 1
    assert whole["counts"]["rejections"] == 1
    assert whole["rejections_by_reason"] == [{"reason": REASON, "count": 1}]
    assert set(county["definitions"]) == {
        "response_rate",
        "resolution_rate",
        "satisfaction_rate",
        "on_time_resolution_rate",
        "on_the_spot_rate",
        "whistle_report_on_time_rate",
        "whistle_reply_on_time_rate",
        "citizen_first_rate",
        "inspection_done_rate",
    }

    township = groups(
        await report(client, token, period="month", at="2026-12-01", group_by="township")
    )
    assert set(township) == {"T03", "T05"}
    assert value(township["T03"], "response_rate") == (0.75, 3, 4)
    assert value(township["T05"], "response_rate") == (0.0, 0, 1)
    assert value(township["T05"], "resolution_rate") == (None, 0, 0)
    assert township["T05"]["rates"]["resolution_rate"]["note"] == "no cases"

    unit = groups(await report(client, token, period="month", at="2026-12-31", group_by="unit"))
    assert value(unit[TEAM], "resolution_rate") == (1.0, 2, 2)  # A, B (D reopened)
    assert value(unit[SQUAD], "resolution_rate") == (0.0, 0, 1)  # C unsubstantiated
    assert unit[SQUAD]["rejections_by_reason"] == [{"reason": REASON, "count": 1}]
    assert unit[None]["counts"]["first_response_due"] == 1  # E, never assigned

    department = groups(
        await report(client, token, period="quarter", at="2026-10-01", group_by="department")
    )
    assert department["CGJ"]["counts"]["rejections"] == 1
    assert department["CGJ"]["counts"]["closed"] == 1
    assert department[None]["counts"]["closed"] == 2  # the township team belongs to none

    matter = groups(await report(client, token, period="year", at="2026-06-01", group_by="matter"))
    assert matter["SC-002"]["rejections_by_reason"] == [{"reason": REASON, "count": 1}]
    assert matter["SC-001"]["counts"]["opened"] == 5  # A, B, C, E and November's F

    november = await report(client, token, period="month", at="2026-11-30")
    assert november["groups"][0]["counts"]["opened"] == 1  # F only


async def test_prometheus_gauges_carry_codes_not_ids(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    cases = await record_the_scripted_cases(sessions)
    client, runtime = kpis
    async with sessions() as session:
        await refresh_gauges(session, runtime.state["kpi_scope"], NOW)
    # The figures /v1/kpis keeps to auditors and supervisors are not in the open /metrics.
    assert "whistle_kpi_" not in generate_latest().decode()
    assert (await client.get("/v1/kpis/metrics")).status_code == 401
    refused = await client.get("/v1/kpis/metrics", headers=auth(token, "dispatcher"))
    assert refused.status_code == 403
    response = await client.get("/v1/kpis/metrics", headers=auth(token, "county_supervisor"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    month = 'period="month"'
    assert (
        f'whistle_kpi_rate{{code="T03",group_by="township",{month},rate="response_rate"}} 0.75'
        in text
    )
    assert (
        f'whistle_kpi_rate{{code="{QINGXI}",group_by="county",{month},rate="on_the_spot_rate"}} 0.2'
        in text
    )
    assert (
        f'whistle_kpi_count{{code="CGJ",count="rejections",group_by="department",{month}}} 1.0'
        in text
    )
    assert (
        f'whistle_kpi_count{{code="none",count="closed",group_by="department",{month}}} 2.0' in text
    )
    assert 'rate="satisfaction_rate"' not in text  # no ratings: no sample rather than a made-up 0
    for s in cases.values():
        assert str(s.case_id) not in text and str(s.tip_id) not in text


async def test_tip_before_or_after_its_case_gives_the_same_facts(sessions: Sessions) -> None:
    opened = at(8)

    def events(s: Script) -> tuple[CloudEvent, list[CloudEvent]]:
        tip = s.tip(opened - timedelta(minutes=1), "grid", on_spot=True)
        return tip, lifecycle(s, opened, TEAM, False, "on_the_spot", False)

    tip_first, case_first, one_batch = script(), script(), script()
    tip, case = events(tip_first)
    await record(sessions, [tip])
    await record(sessions, case[:3])
    await record(sessions, case[3:])
    tip, case = events(case_first)
    await record(sessions, case[3:])  # escalation's and the unit's events before dispatch's too
    await record(sessions, case[:3])
    await record(sessions, [tip])
    tip, case = events(one_batch)
    await record(sessions, [*reversed(case), tip])

    async with sessions() as session:
        rows = (await session.scalars(select(KpiCase))).all()
    facts = [
        {k: v for k, v in row.model_dump().items() if k not in ("case_id", "tip_id")}
        for row in sorted(
            rows,
            key=lambda r: [tip_first, case_first, one_batch].index(
                next(s for s in (tip_first, case_first, one_batch) if s.case_id == r.case_id)
            ),
        )
    ]
    assert facts[0] == facts[1] == facts[2]
    assert facts[0]["channel"] == "grid" and facts[0]["tip_on_spot"] is True
    assert facts[0]["closed_at"] is not None and facts[0]["resolution"] == "on_the_spot"


def test_periods_are_the_countys_months_quarters_and_years() -> None:
    december = period_of("month", date(2026, 12, 1))
    start, end = december.bounds("Asia/Shanghai")
    assert start == datetime(2026, 11, 30, 16, tzinfo=UTC)
    assert end == datetime(2026, 12, 31, 16, tzinfo=UTC)
    assert start <= datetime(2026, 11, 30, 17, tzinfo=UTC) < end
    assert period_of("quarter", date(2026, 11, 5)).label == "2026-Q4"
    assert period_of("quarter", date(2026, 11, 5)).end == date(2027, 1, 1)
    assert period_of("year", date(2026, 2, 28)).label == "2026"


@pytest.mark.parametrize(
    ("params", "role", "status"),
    [
        ({"period": "week"}, "auditor", 422),
        ({"at": "2026-13-01"}, "auditor", 422),
        # Found by fuzzing (tests/integration/test_fuzzing.py): periods whose bounds are no
        # date PostgreSQL or Python holds answered 500.
        ({"at": "0001-01-01"}, "auditor", 422),
        ({"at": "9999-12-31", "period": "year"}, "auditor", 422),
        ({"at": "9998-12-31", "period": "year"}, "auditor", 200),
        ({"group_by": "case"}, "auditor", 422),
        ({}, "dispatcher", 403),
        ({}, None, 401),
        ({}, "county_supervisor", 200),
    ],
)
async def test_bad_requests_and_roles_get_problems(
    kpis: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    params: dict[str, str],
    role: str | None,
    status: int,
) -> None:
    client, _ = kpis
    headers = auth(token, role) if role else {}
    response = await client.get("/v1/kpis", params=params, headers=headers)
    assert response.status_code == status, response.text
    if status != 200:
        assert response.headers["content-type"] == PROBLEM


def rated(s: Script, tip_id: UUID, rating: str, when: datetime) -> CloudEvent:
    data = TipRated(
        tip_id=tip_id,
        case_id=s.case_id,
        rating=rating,  # type: ignore[arg-type]
        channel="web",
        rated_at=when,
    )
    return new_event("whistle/intake", str(tip_id), data, when)


def ladder(
    s: Script, model: Any, fired: datetime, clock: str, department: str | None = None
) -> CloudEvent:
    data = model(
        case_id=s.case_id,
        kind=clock,
        round=1,
        due_at=fired - timedelta(hours=1),
        scheduled_for=fired,
        fired_at=fired,
        late_by_seconds=0,
        policy_id="P-GENERAL",
        whistle_id=WHISTLE if department else None,
        department_code=department,
    )
    return new_event("whistle/escalation", str(s.case_id), data, fired)


WHISTLE = UUID("01956f3a-0000-7000-8000-00000000beef")


async def test_ratings_whistles_and_chases_of_a_scripted_month(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026 in Asia/Shanghai, worked out by hand:

    G  T03, SQUAD (department CGJ). Whistle W on SCJGJ and ZJJ at 6 Dec 03:00Z. SCJGJ reports
       in at 05:00Z on time (7,200 s) and replies on time on the 10th; ZJJ reports in late on
       the 8th at 02:00Z (169,200 s) and never replies. ZJJ's receipt clock was chased on the
       7th and supervised later that day; G's own resolution clock was chased on the 9th.
       Tip Y merged into G. G's tip rated basically satisfied, Y dissatisfied.
    H  T03, TEAM (no department): its tip rated satisfied on the 13th, then (after a
       reopening) dissatisfied on the 20th: the latest rating counts. A rating on 30 November
       (of another tip of G) is November's.

    满意率 December: rated G-tip, Y, H-tip = 3; satisfied G-tip = 1 → 1/3
    报到及时率: 1/2; average 报到 latency (7,200 + 169,200) / 2 = 88,200 s; 答复及时率 1/1
    chases: 2 (ZJJ's whistle clock; G's case clock → SQUAD → CGJ); supervisions 1 (ZJJ); G's
       legal review chased and supervised on the 9th, counted nowhere (the legal office's)
    """
    g, h = script(), script()
    merged_tip = uuid4()
    blown = at(6, 3)
    whistle = WhistleBlown(
        case_id=g.case_id,
        tip_id=g.tip_id,
        actor="S0001",
        actor_role="township_dispatcher",
        version=3,
        township_code="T03",
        unit_id=SQUAD,
        whistle_id=WHISTLE,
        departments=["SCJGJ", "ZJJ"],
        reason_code="beyond_powers",
        reason="超出乡镇职权",
        rule="test",
        urgency="general",
    )

    def reported(department: str, when: datetime, on_time: bool) -> CloudEvent:
        data = WhistleReported(
            case_id=g.case_id,
            whistle_id=WHISTLE,
            department_code=department,
            receipt_no=f"{department}-1",
            reported_at=when,
            due_at=blown + timedelta(days=1),
            on_time=on_time,
            latency_seconds=int((when - blown).total_seconds()),
            via="http",
        )
        return new_event("whistle/escalation", str(g.case_id), data, when)

    replied = WhistleReplied(
        case_id=g.case_id,
        whistle_id=WHISTLE,
        department_code="SCJGJ",
        result="已联合查处",
        replied_at=at(10),
        due_at=at(20),
        on_time=True,
        via="kafka",
    )
    merge = CaseMerged(
        case_id=g.case_id,
        tip_id=merged_tip,
        matter_code=g.matter,
        rule="same_grid",
        window_hours=72,
        catalogue_version="v",
        explanation=[],
    )
    # The department's report is recorded before the whistle that summoned it.
    await record(sessions, [reported("ZJJ", at(8), on_time=False)])
    await record(
        sessions,
        [
            g.opened(at(6)),
            g.assigned(at(6), SQUAD),
            g._case(merge, at(6, 2)),
            g._case(whistle, blown),
            reported("SCJGJ", at(6, 5), on_time=True),
            new_event("whistle/escalation", str(g.case_id), replied, at(10)),
            ladder(g, CaseChased, at(7, 3), "whistle_receipt", "ZJJ"),
            ladder(g, CaseSupervised, at(7, 20), "whistle_receipt", "ZJJ"),
            ladder(g, CaseChased, at(9), "resolution"),
            # The legal office's lateness (法制审核): in the trail, not in these counts.
            ladder(g, CaseChased, at(9, 4), "legal_review"),
            ladder(g, CaseSupervised, at(9, 6), "legal_review"),
            rated(g, g.tip_id, "basically_satisfied", at(12)),
            rated(g, merged_tip, "dissatisfied", at(12, 5)),
        ],
    )
    await record(sessions, [h.opened(at(6)), h.assigned(at(6), TEAM)])
    await record(sessions, [rated(h, h.tip_id, "satisfied", at(13))])
    await record(sessions, [rated(h, h.tip_id, "dissatisfied", at(20))])
    earlier_tip = uuid4()
    await record(sessions, [rated(g, earlier_tip, "satisfied", at(30, 2, month=11))])
    client, _ = kpis

    [county] = (await report(client, token, period="month", at="2026-12-01"))["groups"]
    assert value(county, "satisfaction_rate") == (pytest.approx(1 / 3), 1, 3)
    assert value(county, "whistle_report_on_time_rate") == (0.5, 1, 2)
    assert value(county, "whistle_reply_on_time_rate") == (1.0, 1, 1)
    assert county["whistle_report_latency_avg_seconds"] == 88_200
    counts = county["counts"]
    assert (counts["whistles"], counts["chases"], counts["supervisions"]) == (2, 2, 1)

    department = groups(await report(client, token, period="month", group_by="department"))
    assert department["SCJGJ"]["counts"]["whistle_reports_on_time"] == 1
    assert department["SCJGJ"]["counts"]["whistle_replies"] == 1
    assert department["SCJGJ"]["whistle_report_latency_avg_seconds"] == 7_200
    zjj = department["ZJJ"]["counts"]
    assert (zjj["whistles"], zjj["whistle_reports_on_time"], zjj["chases"]) == (1, 0, 1)
    assert zjj["supervisions"] == 1
    assert value(department["CGJ"], "satisfaction_rate") == (0.5, 1, 2)  # G's two tips
    assert department["CGJ"]["counts"]["chases"] == 1  # G's own clock, through SQUAD
    assert department["CGJ"]["counts"]["whistles"] == 0
    assert value(department[None], "satisfaction_rate") == (0.0, 0, 1)  # H, latest rating

    unit = groups(await report(client, token, period="month", group_by="unit"))
    assert unit[SQUAD]["counts"]["chases"] == 1 and unit[SQUAD]["counts"]["whistles"] == 0
    township = groups(await report(client, token, period="month", group_by="township"))
    assert township["T03"]["counts"]["whistles"] == 2
    assert township["T03"]["counts"]["supervisions"] == 1
    november = groups(await report(client, token, period="month", at="2026-11-01"))
    assert november[QINGXI]["counts"]["rated"] == 1

    async with sessions() as session:
        row = await session.get(KpiCase, g.case_id)
        links = (await session.scalars(select(CaseTip).where(CaseTip.case_id == g.case_id))).all()
    assert row is not None and row.tip_id == g.tip_id  # the merged tip did not replace it
    assert {link.tip_id for link in links} == {g.tip_id, merged_tip, earlier_tip}


async def test_a_chase_fired_before_a_late_arriving_stop_is_not_counted(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """Escalation marks a step premature when the case event that stopped its clock came in
    after it fired; the county does not count that chase against the unit."""
    s = script()
    premature = ladder(s, CaseChased, at(9, 3), "resolution")
    kept = ladder(s, CaseChased, at(9, 1), "first_response")
    due = at(9, 2)
    stop = DeadlineStopped(
        case_id=s.case_id,
        kind="resolution",
        round=1,
        due_at=due,
        stopped_at=at(9, 2),
        on_time=True,
        late_by_seconds=0,
        stopped_by="whistle.case.resolved",
        premature_steps=[premature.id],
    )
    await record(sessions, [s.opened(at(9)), s.assigned(at(9), TEAM), kept])
    await record(sessions, [premature])  # recorded first, in another transaction
    await record(sessions, [new_event("whistle/escalation", str(s.case_id), stop, at(9, 4))])
    client, _ = kpis
    [county] = (await report(client, token, period="month", at="2026-12-09"))["groups"]
    assert county["counts"]["chases"] == 1


async def test_service_requests_are_counted_apart_from_enforcement_cases(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """group_by=kind: the scripted month's enforcement cases (A–E, SC-001/SC-002) and two
    street lights (GF-001, 城关镇城建办), one mended on time, apart, with the definitions."""
    await record_the_scripted_cases(sessions)
    lights = [script(matter="GF-001"), script(matter="GF-001")]
    await record(sessions, lifecycle(lights[0], at(6), "T03-CJB", False, "rectified", False))
    await record(sessions, [lights[1].tip(at(7)), lights[1].opened(at(7))])
    client, _ = kpis
    body = await report(client, token, period="month", at="2026-12-20", group_by="kind")
    by_kind = groups(body)
    assert set(by_kind) == {"enforcement", "service"}
    assert by_kind["service"]["counts"]["opened"] == 2
    assert value(by_kind["service"], "resolution_rate") == (1.0, 1, 1)
    # The enforcement figures are those of the scripted month, as if no street light had gone out.
    assert by_kind["enforcement"]["counts"]["opened"] == 5
    assert value(by_kind["enforcement"], "resolution_rate") == (2 / 3, 2, 3)
    assert set(body["kind_definitions"]) == {"enforcement", "service", "null"}
    county = groups(await report(client, token, period="month", at="2026-12-20"))[QINGXI]
    assert county["counts"]["opened"] == 7  # the county's total still counts both
