"""三率 that hold (issue #15): 响应率 from the contact with the citizen, not the acceptance;
ratings of every channel in 满意率, calls that reached nobody beside them; summons never
answered in the 报到 and 答复 denominators. Real CloudEvents through the real Recorder into a
freshly migrated ledger, then ``GET /v1/kpis``; the figures are worked out by hand beside each
script."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from contracts.envelope import CloudEvent, new_event
from contracts.events import (
    CaseAccepted,
    CaseContacted,
    ExtensionDecided,
    TipFollowUpUnreachable,
    TipRated,
    WhistleBlown,
    WhistleNotified,
    WhistleReplied,
    WhistleReported,
)
from services.ledger.kpis import DEFINITIONS
from services.ledger.models import KpiWhistle
from services.runtime.db import Sessions
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.test_kpis import (
    SQUAD,
    TEAM,
    Script,
    at,
    groups,
    kpis,
    record,
    report,
    script,
    sessions,
    value,
)

__all__ = ["kpis", "sessions"]  # the fixtures, shared with test_kpis.py


def contacted(
    s: Script, when: datetime, unit: str = TEAM, recorded: datetime | None = None
) -> CloudEvent:
    """联系群众 at ``when``, recorded then or at ``recorded``."""
    return s.step(CaseContacted, recorded or when, unit, 3, contacted_at=when, method="phone")


async def test_the_response_rate_counts_the_contact_with_the_citizen_not_the_acceptance(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026; every first-response deadline is 24 h after the opening:

    P  accepted 2 h before its deadline, the citizen never contacted        → due, not met
    Q  contacted 3 h before its deadline                                    → met
    R  contacted 5 h after its deadline                                     → due, not met
    S  contacted in time, recorded before its deadline was (another topic)  → met
    T  contacted twice: late (recorded first), then the earlier, in-time one → met
    U  deadline after NOW, not contacted yet                                 → not counted
    V  contacted in time, but no first-response deadline (never assigned)   → not counted

    响应率 3/5 (Q, S, T); the acceptance clock alone (接单) would say P met.
    """
    p, q, r, s_, t, u, v = (script() for _ in range(7))
    for c in (p, q, r, s_, t, u):
        opened = at(3)
        await record(sessions, [c.opened(opened), c.assigned(opened, TEAM)])
    due = at(4)
    later_due = at(25)  # after NOW (20 December)
    await record(
        sessions,
        [
            p.deadlines(at(3), due, at(10)),
            p.step(CaseAccepted, due - timedelta(hours=2), TEAM, 2),
            p.stopped("first_response", due, due - timedelta(hours=2)),
        ],
    )
    await record(
        sessions, [q.deadlines(at(3), due, at(10)), contacted(q, due - timedelta(hours=3))]
    )
    await record(
        sessions, [r.deadlines(at(3), due, at(10)), contacted(r, due + timedelta(hours=5))]
    )
    await record(sessions, [contacted(s_, due - timedelta(hours=1))])
    await record(sessions, [s_.deadlines(at(3), due, at(10))])
    await record(
        sessions,
        [t.deadlines(at(3), due, at(10)), contacted(t, due + timedelta(hours=1))],
    )
    await record(sessions, [contacted(t, due - timedelta(hours=6), recorded=at(5))])
    await record(sessions, [u.deadlines(at(3), later_due, at(30))])
    await record(sessions, [v.opened(at(3)), contacted(v, at(3, 4))])
    client, _ = kpis

    [county] = (await report(client, token, period="month", at="2026-12-01"))["groups"]
    assert value(county, "response_rate") == (pytest.approx(3 / 5), 3, 5)
    counts = county["counts"]
    assert (counts["contact_due"], counts["contacted_on_time"]) == (5, 3)
    # The acceptance clock (接单) is still counted, for what it says: P alone accepted in time.
    assert (counts["first_response_due"], counts["first_response_met"]) == (5, 1)
    assert "联系群众" in county_definition(await report(client, token), "response_rate")


def county_definition(body: dict[str, Any], rate: str) -> str:
    """The definition /v1/kpis serves beside the rate: DEFINITIONS' own words."""
    definition = body["definitions"][rate]
    assert definition == {
        "name": DEFINITIONS[rate].name,
        "numerator": DEFINITIONS[rate].numerator,
        "denominator": DEFINITIONS[rate].denominator,
        "counted_when": DEFINITIONS[rate].counted_when,
    }
    return " ".join(definition.values())


def rated(s: Script, tip_id: UUID, rating: str, channel: str, when: datetime) -> CloudEvent:
    data = TipRated(
        tip_id=tip_id,
        case_id=s.case_id,
        rating=rating,  # type: ignore[arg-type]
        channel=channel,  # type: ignore[arg-type]
        rated_at=when,
        recorded_by="operator-7" if channel == "hotline" else None,
    )
    return new_event("whistle/intake", str(tip_id), data, when)


async def test_ratings_of_every_channel_count_and_unreachable_calls_are_not_ratings(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026, case G (SQUAD, department CGJ) with three tips:

    web satisfied, WeChat dissatisfied, hotline basically satisfied; a 12345 call before the
    hotline rating reached nobody.  满意率 2/3; rated web 1, wechat 1, hotline 1; unreachable 1.
    """
    g = script()
    web, wechat, hotline = g.tip_id, uuid4(), uuid4()
    missed = TipFollowUpUnreachable(
        tip_id=hotline,
        case_id=g.case_id,
        channel="hotline",
        call_id="CALL-1",
        recorded_by="operator-7",
        attempted_at=at(11),
    )
    await record(sessions, [g.opened(at(6)), g.assigned(at(6), SQUAD)])
    await record(
        sessions,
        [
            rated(g, web, "satisfied", "web", at(10)),
            rated(g, wechat, "dissatisfied", "wechat", at(10, 3)),
            new_event("whistle/intake", str(hotline), missed, at(11)),
            rated(g, hotline, "basically_satisfied", "hotline", at(12)),
        ],
    )
    # The same call recorded again (a redelivery under another event id) counts once.
    await record(sessions, [new_event("whistle/intake", str(hotline), missed, at(11))])
    client, _ = kpis

    body = await report(client, token, period="month", at="2026-12-01")
    [county] = body["groups"]
    assert value(county, "satisfaction_rate") == (pytest.approx(2 / 3), 2, 3)
    counts = county["counts"]
    assert (counts["rated_web"], counts["rated_wechat"], counts["rated_hotline"]) == (1, 1, 1)
    assert counts["follow_ups_unreachable"] == 1
    assert "WeChat" in county_definition(body, "satisfaction_rate")
    department = groups(await report(client, token, period="month", group_by="department"))
    assert value(department["CGJ"], "satisfaction_rate") == (pytest.approx(2 / 3), 2, 3)
    assert department["CGJ"]["counts"]["follow_ups_unreachable"] == 1


WHISTLE = UUID("01956f3a-0000-7000-8000-00000000cafe")


async def test_a_department_that_never_answers_its_summons_lowers_its_rates(
    sessions: Sessions, kpis: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """December 2026, case W in T03: one whistle at 6 Dec 03:00Z on SCJGJ, ZJJ and HBJ, each
    to report in by 7 Dec 03:00Z and reply by 16 Dec 03:00Z; HBJ's summons came late in the
    day, its deadlines are 21 and 28 December (after NOW, the 20th).

    SCJGJ reports in on time and replies on the 18th, two days late (its reply deadline was
    first extended to the 17th, escalation's extension recorded before the notice);
    ZJJ never reports in nor replies; HBJ has not had to yet.

    报到及时率 1/2 (SCJGJ; ZJJ counts, missed, at its deadline); ZJJ alone 0/1, not absent.
    答复及时率 0/2: SCJGJ late, ZJJ never.
    """
    w = script()
    blown = at(6, 3)
    whistle = WhistleBlown(
        case_id=w.case_id,
        tip_id=w.tip_id,
        actor="S0001",
        actor_role="dispatcher",
        version=2,
        township_code="T03",
        unit_id=SQUAD,
        whistle_id=WHISTLE,
        departments=["SCJGJ", "ZJJ", "HBJ"],
        reason_code="beyond_powers",
        reason="超出乡镇职权",
        rule="test",
        urgency="general",
    )

    def notified(department: str, receipt: datetime, reply: datetime) -> CloudEvent:
        data = WhistleNotified(
            case_id=w.case_id,
            whistle_id=WHISTLE,
            department_code=department,
            township_code="T03",
            matter_code=w.matter,
            reason_code="beyond_powers",
            reason="超出乡镇职权",
            urgency="general",
            receipt_due_at=receipt,
            reply_due_at=reply,
            policy_id="P-GENERAL",
        )
        return new_event("whistle/escalation", str(w.case_id), data, blown)

    extended = ExtensionDecided(
        case_id=w.case_id,
        request_id=uuid4(),
        kind="whistle_reply",
        round=1,
        approved=True,
        old_due_at=at(16, 3),
        new_due_at=at(17, 3),
        decided_by="S0001",
        decided_by_role="dispatcher",
        whistle_id=WHISTLE,
        department_code="SCJGJ",
    )
    reported = WhistleReported(
        case_id=w.case_id,
        whistle_id=WHISTLE,
        department_code="SCJGJ",
        receipt_no="SCJGJ-1",
        reported_at=at(6, 5),
        due_at=at(7, 3),
        on_time=True,
        latency_seconds=7200,
        via="http",
    )
    replied = WhistleReplied(
        case_id=w.case_id,
        whistle_id=WHISTLE,
        department_code="SCJGJ",
        result="已联合查处",
        replied_at=at(18, 3),
        due_at=at(17, 3),
        on_time=False,
        via="http",
    )
    await record(sessions, [new_event("whistle/escalation", str(w.case_id), extended, at(9))])
    await record(
        sessions,
        [
            w.opened(at(6)),
            w.assigned(at(6), SQUAD),
            w._case(whistle, blown),
            notified("SCJGJ", at(7, 3), at(16, 3)),
            notified("ZJJ", at(7, 3), at(16, 3)),
            notified("HBJ", at(21, 3), at(28, 3)),
            new_event("whistle/escalation", str(w.case_id), reported, at(6, 5)),
            new_event("whistle/escalation", str(w.case_id), replied, at(18, 3)),
        ],
    )
    client, _ = kpis

    body = await report(client, token, period="month", at="2026-12-01")
    [county] = body["groups"]
    assert value(county, "whistle_report_on_time_rate") == (0.5, 1, 2)
    assert value(county, "whistle_reply_on_time_rate") == (0.0, 0, 2)
    counts = county["counts"]
    assert (counts["whistles"], counts["whistle_reports"], counts["whistle_replies"]) == (3, 1, 1)
    assert "never reports in" in county_definition(body, "whistle_report_on_time_rate")

    department = groups(await report(client, token, period="month", group_by="department"))
    assert value(department["ZJJ"], "whistle_report_on_time_rate") == (0.0, 0, 1)
    assert value(department["ZJJ"], "whistle_reply_on_time_rate") == (0.0, 0, 1)
    assert value(department["SCJGJ"], "whistle_reply_on_time_rate") == (0.0, 0, 1)
    assert department["HBJ"]["rates"]["whistle_report_on_time_rate"]["denominator"] == 0
    township = groups(await report(client, token, period="month", group_by="township"))
    assert value(township["T03"], "whistle_report_on_time_rate") == (0.5, 1, 2)

    # The reply deadline that holds is the extended one, though recorded before the notice.
    async with sessions() as session:
        row = await session.get(KpiWhistle, (WHISTLE, "SCJGJ"))
    assert row is not None and row.reply_due_at == at(17, 3)
