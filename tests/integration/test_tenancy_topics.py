"""Tenancy's third step on Kafka (issue 18, item 4; docs/scale.md, "Tenancy"): escalation in
process against the real broker, over the shipped reference data — 清溪县 (140999, the default)
and 桃林县 (140998), whose departments share their codes.

A summons, and the chase copied to the department later, go to the case's county's department
topic only: ``escalation.dept.<code>.v1`` for the default county (the name from before
tenancy), ``escalation.dept.140998.<code>.v1`` for 桃林县. A department answering on the shared
``escalation.whistles.v1`` about another county's case — a token of another county, the same
department code — is dead-lettered with the reason and records nothing.
"""

from __future__ import annotations

import json
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from contracts.events import WhistleBlown, WhistleReceiptSubmitted
from contracts.topics import CASES, WHISTLES, department_topic
from services.escalation.models import WhistleSummons
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_escalation_clocks import local
from tests.integration.test_forged_events import dead_letter
from tests.integration.test_whistle_protocol import (
    Escalation,
    about,
    auth,
    find_on_topic,
    produce,
    whistle,
)

# The module-scoped escalation app, shared as a fixture.
from tests.integration.test_whistle_protocol import escalation as escalation
from tests.support.infra import read_everything

QINGXI, TAOLIN = "140999", "140998"
# Summoned only in this module's tests, in both counties.
DEPARTMENT = "SHJJ"
TOPICS = {
    QINGXI: "escalation.dept.shjj.v1",  # the default county's: the name it always had
    TAOLIN: "escalation.dept.140998.shjj.v1",
}


async def _blow(producer: AIOKafkaProducer, county: str, departments: list[str]) -> WhistleBlown:
    """A whistle blown on a new case of ``county``, as dispatch produces it."""
    blown = whistle(uuid4(), departments)
    await produce(
        producer, CASES, blown, local(2026, 11, 23, 9, 0), "whistle/dispatch", county=county
    )
    return blown


def _whistles_on(records: list[ConsumerRecord]) -> set[str]:
    return {str(json.loads(r.value)["data"].get("whistle_id")) for r in records}


async def test_a_summons_and_its_chase_land_on_their_own_countys_department_topic_only(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings
) -> None:
    bootstrap = migrated.kafka_bootstrap or ""
    assert {c: department_topic(DEPARTMENT, c, QINGXI) for c in TOPICS} == TOPICS
    escalation.clock.now = local(2026, 11, 23, 9, 0)  # Monday
    blown = {county: await _blow(producer, county, [DEPARTMENT]) for county in TOPICS}

    for county, topic in TOPICS.items():
        (notice,) = await find_on_topic(
            bootstrap, topic, about(blown[county].whistle_id, "whistle.whistle.notified")
        )
        assert json.loads(notice.value)["county"] == county

    # Days later the receipt clocks are long overdue: the scheduler chases both departments,
    # and copies each chase to its own county's department only.
    escalation.clock.now = local(2026, 11, 27, 17, 0)
    for county, topic in TOPICS.items():
        (chase,) = await find_on_topic(
            bootstrap, topic, about(blown[county].whistle_id, "whistle.case.chased")
        )
        assert json.loads(chase.value)["county"] == county

    on = {
        county: _whistles_on(await read_everything(bootstrap, [t])) for county, t in TOPICS.items()
    }
    assert str(blown[QINGXI].whistle_id) in on[QINGXI]
    assert str(blown[QINGXI].whistle_id) not in on[TAOLIN]
    assert str(blown[TAOLIN].whistle_id) in on[TAOLIN]
    assert str(blown[TAOLIN].whistle_id) not in on[QINGXI]


def _receipt(blown: WhistleBlown, number: str) -> WhistleReceiptSubmitted:
    return WhistleReceiptSubmitted(
        case_id=blown.case_id,
        whistle_id=blown.whistle_id,
        department_code=blown.departments[0],
        receipt_no=number,
    )


async def _summons(escalation: Escalation, whistle_id: UUID) -> WhistleSummons | None:
    async with escalation.runtime.sessions() as session:
        return await session.get(WhistleSummons, (whistle_id, "CGJ"))


async def test_another_countys_department_answering_on_kafka_is_dead_lettered(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings, token: TokenFactory
) -> None:
    """Both counties have a 城管局 CGJ: 清溪县's token (naming no county: the default's) holds
    ``dept:CGJ`` as 桃林县's does, and the source ``whistle/dept/cgj`` is the same, so only the
    token's county tells them apart."""
    bootstrap = migrated.kafka_bootstrap or ""
    escalation.clock.now = local(2026, 11, 23, 9, 0)
    blown = await _blow(producer, TAOLIN, ["CGJ"])
    (notice,) = await find_on_topic(
        bootstrap, department_topic("CGJ", TAOLIN), about(blown.whistle_id)
    )
    source, at = "whistle/dept/cgj", escalation.clock.now

    qingxi = token("county_department", "dept:CGJ")
    foreign = await produce(producer, WHISTLES, _receipt(blown, "QX-1"), at, source, qingxi)
    reason = await dead_letter(bootstrap, WHISTLES, foreign)
    assert reason == (
        f"PoisonEvent: receipt refused: case {blown.case_id} is not of the counties the token "
        f"acts for "
        f"({QINGXI})"
    )
    summons = await _summons(escalation, blown.whistle_id)
    assert summons is not None and summons.receipt_no is None

    # 桃林县's own 城管局 reports in: recorded.
    taolin = token("county_department", f"county:{TAOLIN}", "dept:CGJ")
    await produce(producer, WHISTLES, _receipt(blown, "TL-1"), at, source, taolin, county=TAOLIN)
    (reported,) = await find_on_topic(
        bootstrap, WHISTLES, about(blown.whistle_id, "whistle.whistle.reported")
    )
    assert json.loads(reported.value)["data"]["receipt_no"] == "TL-1"
    assert json.loads(reported.value)["county"] == TAOLIN
    assert json.loads(notice.value)["county"] == TAOLIN


async def test_a_meetings_summons_goes_to_its_countys_department_topic_only(
    escalation: Escalation, producer: AIOKafkaProducer, migrated: Settings, token: TokenFactory
) -> None:
    """A joint meeting convened on 桃林县's case summons 桃林县's department, on its topic;
    the meeting's own events name the county."""
    bootstrap = migrated.kafka_bootstrap or ""
    escalation.clock.now = local(2026, 11, 23, 9, 0)
    blown = await _blow(producer, TAOLIN, [DEPARTMENT])
    await find_on_topic(bootstrap, TOPICS[TAOLIN], about(blown.whistle_id))
    leader = token("township_leader", f"county:{TAOLIN}", "township:T03")
    convened = await escalation.http.post(
        "/v1/meetings",
        json={
            "held_at": local(2026, 11, 25, 9, 0).isoformat(),
            "place": "乡镇会议室",
            "agenda": ["占道经营"],
            "case_ids": [str(blown.case_id)],
            "departments": [DEPARTMENT],
        },
        headers=auth(leader),
    )
    assert convened.status_code == 201, convened.text
    meeting_id = convened.json()["meeting_id"]

    def summons(record: ConsumerRecord) -> bool:
        event = json.loads(record.value)
        return event["type"] == "whistle.meeting.summoned" and event["subject"] == meeting_id

    (summoned,) = await find_on_topic(bootstrap, TOPICS[TAOLIN], summons)
    assert json.loads(summoned.value)["county"] == TAOLIN
    assert not [r for r in await read_everything(bootstrap, [TOPICS[QINGXI]]) if summons(r)]
