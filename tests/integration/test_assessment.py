"""双重考核 (issue #15, item 1): a township leader gives the assessment opinion of an officer
seconded to their township, through dispatch's HTTP API on the sample county's data; it is
staged as ``whistle.staff.assessed`` on the case topic, sealed in the township's name. An
officer of another township, or of the township's own team, is not theirs to assess."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import httpx
from sqlalchemy import select

from services.dispatch import consumers as dispatch_consumers
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.tips import bearer

PROBLEM = "application/problem+json"


async def staged(runtime: Runtime, staff_id: str) -> list[dict[str, Any]]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == staff_id)  # type: ignore[arg-type]
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        return list(rows.all())


async def test_a_township_leader_assesses_the_officers_seconded_to_the_township(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    leader = bearer(token, "township_leader", "township:T03")
    opinion = {
        "staff_id": "S0077",  # 段保平, 城关镇市场监管派驻组 (seconded by SCJGJ)
        "period": "2026-12",
        "grade": "competent",
        "opinion": "工作认真负责，按期办结率高。",
    }
    answer = await client.post("/v1/assessments", json=opinion, headers=leader)
    assert answer.status_code == 201, answer.text
    [event] = await staged(runtime, "S0077")
    assert event["type"] == "whistle.staff.assessed"
    data = event["data"]
    assert {k: data[k] for k in ("unit_id", "department_code", "township_code", "seal")} == {
        "unit_id": "T03-SCJGJ",
        "department_code": "SCJGJ",
        "township_code": "T03",
        "seal": "城关镇人民政府",
    }
    assert (data["grade"], data["period"]) == ("competent", "2026-12")
    assert data["assessed_by"]  # the leader's subject
    assert data == answer.json() | {"assessed_at": data["assessed_at"]}

    # The township's own team (S0069) and another township's squad (S0010, T01) are not
    # seconded to T03: unknown to this leader, nothing staged.
    for staff_id in ("S0069", "S0010"):
        refused = await client.post(
            "/v1/assessments", json=opinion | {"staff_id": staff_id}, headers=leader
        )
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"] == PROBLEM
        assert refused.json()["title"] == "未找到派驻人员"
        assert await staged(runtime, staff_id) == []
    bad = await client.post("/v1/assessments", json=opinion | {"period": "2026-13"}, headers=leader)
    assert bad.status_code == 422 and bad.json()["title"] == "考核期间无效"
    ungraded = await client.post(
        "/v1/assessments", json=opinion | {"grade": "很好"}, headers=leader
    )
    assert ungraded.status_code == 422
    assert len(await staged(runtime, "S0077")) == 1


async def test_a_second_countys_leader_assesses_its_own_seconded_officers(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """桃林县's staff are in 桃林县's reference data, not the default county's: its leader's
    assessment is read against its own county; 清溪县's officers are unknown to it."""
    client, runtime = dispatch
    leader = bearer(token, "township_leader", "township:L01", "county:140998")
    opinion = {
        "staff_id": "TL0010",  # 梁丽萍, 桃源街道市场监管派驻组
        "period": "2026-12",
        "grade": "competent",
        "opinion": "工作认真负责。",
    }
    answer = await client.post("/v1/assessments", json=opinion, headers=leader)
    assert answer.status_code == 201, answer.text
    [event] = await staged(runtime, "TL0010")
    assert event["data"]["unit_id"] == "L01-SCJGJ"
    other = await client.post(
        "/v1/assessments", json=opinion | {"staff_id": "S0077"}, headers=leader
    )
    assert other.status_code == 404 and other.json()["title"] == "未找到派驻人员"


def test_dispatch_does_not_put_an_assessment_on_a_case_timeline() -> None:
    """Dispatch reads its own topic back for the case timelines; an opinion (keyed by the
    officer, not a case) is ignored there, not sent to the DLQ as a case event without a case."""
    # Building the subscription reads only the runtime's token verifier.
    runtime = SimpleNamespace(verifier=None)
    subscription = dispatch_consumers.subscription(runtime)  # type: ignore[arg-type]
    assert subscription.handler_for("whistle.staff.assessed") is None
    assert subscription.handler_for("whistle.case.resolved") is not None
