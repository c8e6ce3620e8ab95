"""Tenancy's second step in escalation (issue 18, item 4; docs/scale.md, "Tenancy"): escalation
in process over the shipped reference data, 清溪县 (140999, the default) and 桃林县 (140998).
A case's clocks, whistles, extensions and joint meetings are read only within the token's
counties, through the county escalation learnt for the case; another county's is answered as a
missing one (404), exactly as dispatch answers; the city's ``county:*`` reads both."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

import httpx
from sqlalchemy import select

from contracts.envelope import new_event
from services.escalation import counties
from services.escalation.consumers import in_county
from services.escalation.models import Meeting
from services.runtime.outbox import OutboxMessage
from tests.conftest import TokenFactory
from tests.integration.test_deadline_visibility import Escalation, escalation
from tests.integration.test_escalation_clocks import _assigned
from tests.integration.test_extensions import ASSIGNED, _handlers
from tests.integration.test_tenancy import QINGXI, TAOLIN, _bearer
from tests.integration.test_whistle_protocol import whistle

__all__ = ["escalation"]  # the module-scoped escalation app, shared as a fixture

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Seeded:
    case_id: UUID
    whistle_id: UUID
    meeting_id: UUID


async def _seed(pair: Escalation, county: str) -> Seeded:
    """A case of ``county`` assigned (its clocks started), a whistle summoning CGJ blown on it
    and a joint meeting convened on it, its events naming the county as dispatch's do."""
    _, runtime = pair
    handlers = _handlers(runtime)
    case_id = uuid4()
    blown = whistle(case_id, ["CGJ"])
    for data, handle in (
        (_assigned(case_id), handlers.case_assigned),
        (blown, handlers.whistle_blown),
    ):
        event = new_event("whistle/dispatch", str(case_id), data, ASSIGNED, county=county)
        async with runtime.transaction() as session:
            await in_county(handle)(session, event, "dispatch.cases.v1")
    meeting_id = uuid4()
    async with runtime.transaction() as session:
        session.add(
            Meeting(
                id=meeting_id,
                township_code="T03",
                held_at=ASSIGNED,
                place="乡镇会议室",
                departments=["CGJ"],
                agenda=["占道经营"],
                case_ids=[str(case_id)],
                whistle_ids=[str(blown.whistle_id)],
                convened_by="S0003",
                convened_at=ASSIGNED,
            )
        )
    return Seeded(case_id, blown.whistle_id, meeting_id)


async def _missing(answer: httpx.Response) -> None:
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)


async def test_each_countys_users_read_only_their_countys_clocks_whistles_and_meetings(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, _ = escalation
    seeded = {QINGXI: await _seed(escalation, QINGXI), TAOLIN: await _seed(escalation, TAOLIN)}

    # 清溪县's supervisor and department hold tokens from before tenancy (no county: the
    # default county's); 桃林县's name their county. Both counties' 城管局 share the code CGJ.
    readers = {
        QINGXI: (token("county_supervisor"), token("county_department", "dept:CGJ")),
        TAOLIN: (
            token("county_supervisor", f"county:{TAOLIN}"),
            token("county_department", f"county:{TAOLIN}", "dept:CGJ"),
        ),
    }
    for county, (supervisor, department) in readers.items():
        own, other = seeded[county], seeded[TAOLIN if county == QINGXI else QINGXI]
        for bearer in (supervisor, department):
            headers = _bearer(bearer)
            clocks = await http.get(f"/v1/cases/{own.case_id}/deadlines", headers=headers)
            assert clocks.status_code == 200 and clocks.json()["deadlines"], clocks.text
            await _missing(await http.get(f"/v1/cases/{other.case_id}/deadlines", headers=headers))
            listed = await http.get("/v1/whistles", headers=headers)
            assert listed.status_code == 200, listed.text
            whistles = {w["whistle_id"] for w in listed.json()["whistles"]}
            assert str(own.whistle_id) in whistles and str(other.whistle_id) not in whistles
            meetings = await http.get("/v1/meetings", headers=headers)
            assert meetings.status_code == 200, meetings.text
            ids = {m["meeting_id"] for m in meetings.json()["meetings"]}
            assert str(own.meeting_id) in ids and str(other.meeting_id) not in ids
            await _missing(await http.get(f"/v1/meetings/{other.meeting_id}", headers=headers))
        supervised = _bearer(supervisor)
        extensions = await http.get(f"/v1/cases/{own.case_id}/extensions", headers=supervised)
        assert extensions.status_code == 200, extensions.text
        await _missing(await http.get(f"/v1/cases/{other.case_id}/extensions", headers=supervised))
        # Another county's 城管局 cannot report in on this county's whistle: it is not there.
        receipt = {"receipt_no": "BD-1", "officer": "S0101"}
        await _missing(
            await http.post(
                f"/v1/whistles/{other.whistle_id}/receipt",
                json=receipt,
                headers=_bearer(department),
            )
        )

    # The city's roles (county:*) read both counties.
    city = _bearer(token("county_supervisor", "county:*"))
    listed = {
        w["whistle_id"] for w in (await http.get("/v1/whistles", headers=city)).json()["whistles"]
    }
    for own in seeded.values():
        assert str(own.whistle_id) in listed
        clocks = await http.get(f"/v1/cases/{own.case_id}/deadlines", headers=city)
        assert clocks.status_code == 200, clocks.text
        meeting = await http.get(f"/v1/meetings/{own.meeting_id}", headers=city)
        assert meeting.status_code == 200, meeting.text


async def test_another_countys_token_cannot_convene_record_decide_or_report_on_a_meeting(
    escalation: Escalation, token: TokenFactory
) -> None:
    """Tenancy's third step: a meeting's writes are county-checked as its reads are. The
    seeded meetings of both counties sit in township T03, so a leader of T03 in 清溪县 (no
    county: the default's) leads the township of 桃林县's meeting too: only the county stops
    them, and 清溪县's 城管局 shares the code CGJ with 桃林县's."""
    http, _ = escalation
    theirs = await _seed(escalation, TAOLIN)
    qingxi_leader = _bearer(token("township_leader", "township:T03"))
    taolin_leader = _bearer(token("township_leader", f"county:{TAOLIN}", "township:T03"))
    minutes = {"attended": ["CGJ"], "minutes": "会议议定：城管局牵头清理。"}
    decision = {
        "owner_kind": "department",
        "owner_code": "CGJ",
        "task": "城管局牵头清理占道经营",
        "due_at": (ASSIGNED + timedelta(days=5)).isoformat(),
    }
    meeting_url = f"/v1/meetings/{theirs.meeting_id}"

    convening = {
        "township_code": "T03",
        "held_at": (ASSIGNED + timedelta(days=1)).isoformat(),
        "place": "乡镇会议室",
        "agenda": ["占道经营"],
        "case_ids": [str(theirs.case_id)],
        "departments": ["CGJ"],
    }
    await _missing(await http.post("/v1/meetings", json=convening, headers=qingxi_leader))
    await _missing(await http.post(f"{meeting_url}/held", json=minutes, headers=qingxi_leader))
    await _missing(
        await http.post(f"{meeting_url}/decisions", json=decision, headers=qingxi_leader)
    )

    # 桃林县's own leader convenes, records and decides.
    convened = await http.post("/v1/meetings", json=convening, headers=taolin_leader)
    assert convened.status_code == 201, convened.text
    held = await http.post(f"{meeting_url}/held", json=minutes, headers=taolin_leader)
    assert held.status_code == 200, held.text
    recorded = await http.post(f"{meeting_url}/decisions", json=decision, headers=taolin_leader)
    assert recorded.status_code == 201, recorded.text

    # Its decision is reported done by 桃林县's 城管局, not by 清溪县's.
    done_url = f"/v1/meeting-decisions/{recorded.json()['decision_id']}/done"
    result = {"result": "已清理完毕"}
    qingxi_cgj = _bearer(token("county_department", "dept:CGJ"))
    await _missing(await http.post(done_url, json=result, headers=qingxi_cgj))
    taolin_cgj = _bearer(token("county_department", f"county:{TAOLIN}", "dept:CGJ"))
    done = await http.post(done_url, json=result, headers=taolin_cgj)
    assert done.status_code == 201, done.text


async def test_a_case_keeps_the_county_its_first_event_named(escalation: Escalation) -> None:
    """The county is learnt from the case's first event and never moves: its own events, staged
    in the transaction that learnt it or in a later one whose event names another county, all
    carry the first (issue #17 kept this while cutting the read of it per event)."""
    _, runtime = escalation
    handlers = _handlers(runtime)
    case_id = uuid4()
    blown = whistle(case_id, ["CGJ"])
    for data, handle, county in (
        (_assigned(case_id), handlers.case_assigned, TAOLIN),
        (blown, handlers.whistle_blown, QINGXI),
    ):
        event = new_event("whistle/dispatch", str(case_id), data, ASSIGNED, county=county)
        async with runtime.transaction() as session:
            await in_county(handle)(session, event, "dispatch.cases.v1")

    async with runtime.sessions() as session:
        assert await counties.county_of(session, case_id) == TAOLIN
        staged = (
            await session.scalars(
                select(OutboxMessage.event).where(OutboxMessage.key == str(case_id))
            )
        ).all()
    kinds = {e["type"]: e["county"] for e in staged}
    assert kinds == {"whistle.deadlines.set": TAOLIN, "whistle.whistle.notified": TAOLIN}
