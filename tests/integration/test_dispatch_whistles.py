"""吹哨 through dispatch's HTTP API and routing: eligibility, scope, events; joint operations."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select
from uuid6 import uuid7

from contracts.topics import CASES
from services.dispatch.models import Case, Whistle
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.tips import case_events, case_of, published, send_tip

PROBLEM = "application/problem+json"


async def _case(runtime: Runtime, matter: str, status: str = "in_progress", **fields) -> UUID:
    now = datetime.now(UTC)
    case = Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status=status,
        matter_code=matter,
        township_code="T03",
        village_code="T03V02",
        urgency=fields.pop("urgency", "general"),
        unit_id=fields.pop("unit_id", "T03-CGJ"),
        catalogue_version="test",
        created_at=now,
        updated_at=now,
        **fields,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case.id


def _bearer(
    token: TokenFactory, role: str, *scopes: str, subject: str | None = None
) -> dict[str, str]:
    return {"authorization": f"Bearer {token(role, *scopes, subject=subject)}"}


async def _whistle(
    client: httpx.AsyncClient, case_id: UUID, headers: dict[str, str], **body: object
) -> httpx.Response:
    return await client.post(
        f"/v1/cases/{case_id}/whistle", json=body, headers={**headers, "If-Match": '"1"'}
    )


async def test_an_eligible_whistle_is_recorded_and_published(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory, migrated: Settings
) -> None:
    client, runtime = dispatch
    case_id = await _case(runtime, "CG-001")  # 占道经营: CGJ leads, SCJGJ and GAJ support
    as_t03 = _bearer(token, "dispatcher", "township:T03")
    answer = await _whistle(
        client,
        case_id,
        as_t03,
        departments=["GAJ", "SCJGJ"],
        reason_code="needs_joint_action",
        reason="摊贩暴力抗法，需公安、市场监管联合处置",
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == 2 and answer.headers["etag"] == '"2"'

    event = await published(
        migrated.kafka_bootstrap or "", CASES, str(case_id), "whistle.case.whistle_blown"
    )
    data = event["data"]
    assert data["departments"] == ["GAJ", "SCJGJ"]
    assert (data["reason_code"], data["rule"], data["automatic"]) == (
        "needs_joint_action",
        "needs_joint_action",
        False,
    )
    assert (data["actor_role"], data["version"], data["matter_code"]) == ("dispatcher", 2, "CG-001")
    async with runtime.sessions() as session:
        (row,) = (await session.scalars(select(Whistle).where(Whistle.case_id == case_id))).all()
    assert row.departments == ["GAJ", "SCJGJ"] and row.actor == "test-dispatcher"

    again = await client.post(
        f"/v1/cases/{case_id}/whistle",
        json={"departments": ["GAJ"], "reason_code": "needs_joint_action", "reason": "再次"},
        headers={**as_t03, "If-Match": '"2"'},
    )
    assert again.status_code == 422
    assert again.json()["rules"] == ["no_repeat_whistle"]


async def test_an_ineligible_whistle_is_refused_with_the_rules_and_changes_nothing(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    case_id = await _case(runtime, "CG-003")  # 乱扔垃圾: claimed by T03, no supporting dept
    answer = await _whistle(
        client,
        case_id,
        _bearer(token, "dispatcher", "township:T03"),
        departments=["CGJ", "WSJKJ"],
        reason_code="beyond_powers",
        reason="想让县里来处理",
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == PROBLEM
    problem = answer.json()
    assert problem["rules"] == ["beyond_powers", "own_claimed_matter", "unrelated_department"]
    assert all(r["reason"] for r in problem["refusals"])
    assert "超出乡镇职权" in problem["detail"]
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
        whistles = (await session.scalars(select(Whistle).where(Whistle.case_id == case_id))).all()
    assert case is not None and case.version == 1 and not whistles
    assert not [e for e in await case_events(runtime, case_id)]


async def test_a_major_emergency_overrides_the_claimed_matter_rule(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    case_id = await _case(runtime, "CG-003", urgency="emergency")
    answer = await _whistle(
        client,
        case_id,
        _bearer(token, "dispatcher", "township:T03"),
        departments=["CGJ"],
        reason_code="major_emergency",
        reason="垃圾堆起火，蔓延至民房",
    )
    assert answer.status_code == 200, answer.text
    (event,) = await case_events(runtime, case_id)
    assert event["type"] == "whistle.case.whistle_blown"
    assert event["data"]["rule"] == "major_emergency"


@pytest.mark.parametrize(
    ("role", "scope", "status"),
    [
        ("dispatcher", "township:T01", 404),  # another township's case is answered as missing
        ("county_supervisor", "township:*", 403),  # sees it, but whistling is the township's
        ("unit_member", "unit:SCJGJ-COUNTY", 403),  # the case's own unit does not whistle
    ],
)
async def test_only_the_townships_own_dispatcher_may_whistle(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
    role: str,
    scope: str,
    status: int,
) -> None:
    client, runtime = dispatch
    case_id = await _case(runtime, "SC-006", unit_id="SCJGJ-COUNTY")
    answer = await _whistle(
        client,
        case_id,
        _bearer(token, role, scope),
        departments=["SCJGJ"],
        reason_code="beyond_powers",
        reason="电梯困人",
    )
    assert answer.status_code == status
    assert answer.headers["content-type"] == PROBLEM
    assert not await case_events(runtime, case_id)


async def test_a_county_only_tip_whistles_automatically(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = dispatch
    tip_id = await send_tip(runtime, "小区电梯经常停在两层之间困人", "T03V01G01", hint="SC-006")
    case = await case_of(runtime, tip_id)
    events = await case_events(runtime, case.id)
    assert [e["type"] for e in events] == [
        "whistle.case.opened",
        "whistle.case.assigned",
        "whistle.case.whistle_blown",
    ]
    assigned, blown = events[1]["data"], events[2]["data"]
    assert (assigned["unit_id"], assigned["rule"]) == ("SCJGJ-COUNTY", "county_only")
    assert assigned["supporting_units"] == ["YJGLJ-COUNTY"]
    assert blown["automatic"] is True
    assert (blown["rule"], blown["reason_code"], blown["departments"]) == (
        "county_only",
        "beyond_powers",
        ["SCJGJ"],
    )
    assert blown["township_code"] == "T03"


async def test_a_joint_operation_lets_the_supporting_units_read_and_record_progress(
    dispatch: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch
    tip_id = await send_tip(runtime, "商铺门口占道经营摆摊", "T03V02G01", hint="CG-001")
    case = await case_of(runtime, tip_id)
    assert case.unit_id == "T03-CGJ"
    assert case.supporting_units == ["T03-SCJGJ", "T03-GAJ"]
    assigned = (await case_events(runtime, case.id))[1]["data"]
    assert assigned["supporting_units"] == ["T03-SCJGJ", "T03-GAJ"]
    assert any("联合执法" in line for line in assigned["explanation"])
    assert not [e for e in await case_events(runtime, case.id) if "whistle_blown" in e["type"]]

    lead = _bearer(token, "unit_member", "unit:T03-CGJ")
    # 吕玉兰 (S0091) of 城关镇派出所, whose 执法证 is valid: progress on a penalty matter.
    police = _bearer(token, "unit_member", "unit:T03-GAJ", subject="S0091")
    stranger = _bearer(token, "unit_member", "unit:T03-WSJKJ")
    url = f"/v1/cases/{case.id}"
    assert (await client.get(url, headers=police)).status_code == 200
    assert (await client.get(url, headers=stranger)).status_code == 404
    refused = await client.post(f"{url}/accept", headers={**police, "If-Match": '"1"'})
    assert refused.status_code == 403
    for version, action in ((1, "accept"), (2, "start")):
        moved = await client.post(f"{url}/{action}", headers={**lead, "If-Match": f'"{version}"'})
        assert moved.status_code == 200, moved.text
    progress = await client.post(
        f"{url}/progress",
        json={"note": "派出所民警到场维持秩序"},
        headers={**police, "If-Match": '"3"'},
    )
    assert progress.status_code == 200, progress.text
    listed = await client.get("/v1/cases", params={"unit": "T03-GAJ"}, headers=police)
    assert case.id in {UUID(c["id"]) for c in listed.json()}
