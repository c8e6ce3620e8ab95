"""Acting on a case through dispatch's HTTP API: versions, roles, rejections, the record."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select
from uuid6 import uuid7

from reference.county import Staff
from services.dispatch.models import Case
from services.dispatch.queries import open_load
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.files import png
from tests.support.tips import OFFICER

PROBLEM = "application/problem+json"


@pytest.fixture
async def assigned_case(dispatch: tuple[httpx.AsyncClient, Runtime]) -> UUID:
    """A fresh case of 城关镇 (T03), assigned to its urban-management squad."""
    _, runtime = dispatch
    case = _squad_case("assigned", None, datetime.now(UTC), village_code="T03V02")
    async with runtime.transaction() as session:
        session.add(case)
    return case.id


def _squad_case(
    status: str, staff_id: str | None, now: datetime, village_code: str | None = None
) -> Case:
    """A case of 城关镇 (T03) held by its urban-management squad, in ``status``."""
    return Case(
        county="140999",
        id=uuid7(),
        tip_id=uuid7(),
        status=status,
        matter_code="CG-001",
        township_code="T03",
        village_code=village_code,
        urgency="general",
        unit_id="T03-CGJ",
        staff_id=staff_id,
        catalogue_version="test",
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def as_unit(token: TokenFactory) -> dict[str, str]:
    # 宋晓丽 (S0089), whose 执法证 is valid: steps on the ground of a penalty matter need one.
    return {"authorization": f"Bearer {token('unit_member', 'unit:T03-CGJ', subject=OFFICER)}"}


@pytest.fixture
def as_dispatcher(token: TokenFactory) -> dict[str, str]:
    return {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}


@pytest.fixture
def as_county(token: TokenFactory) -> dict[str, str]:
    return {"authorization": f"Bearer {token('county_supervisor', 'township:*')}"}


async def _act(
    client: httpx.AsyncClient,
    case_id: UUID,
    action: str,
    headers: dict[str, str],
    body: dict[str, object] | None = None,
) -> httpx.Response:
    current = await client.get(f"/v1/cases/{case_id}", headers=headers)
    etag = current.headers.get("etag", '"0"')
    return await client.post(
        f"/v1/cases/{case_id}/{action}", json=body or {}, headers={**headers, "If-Match": etag}
    )


async def _events(runtime: Runtime, case_id: UUID) -> list[dict]:
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == str(case_id))
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        return list(rows.all())


async def test_a_case_is_accepted_worked_resolved_and_closed_and_every_step_is_recorded(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    assigned_case: UUID,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, runtime = dispatch
    photo = await client.post(
        f"/v1/cases/{assigned_case}/evidence", files={"file": ("p", png(7))}, headers=as_unit
    )
    assert photo.status_code == 201, photo.text
    steps = [
        ("accept", as_unit, None, "accepted"),
        ("start", as_unit, None, "in_progress"),
        (
            "progress",
            as_unit,
            {"note": "已到现场，摊主已收摊", "evidence": [photo.json()["id"]]},
            "in_progress",
        ),
        (
            "resolve",
            as_unit,
            {
                "resolution": "rectified",
                "note": "责令三日内整改",
                "rectification_due": "2026-11-24",
            },
            "resolved",
        ),
        ("close", as_dispatcher, None, "closed"),
    ]
    for version, (action, who, body, status) in enumerate(steps, start=2):
        if action == "close":
            # 回访 first (tests/integration/test_follow_up_close.py): the citizen's rating
            # is recorded, as dispatch records it from intake.tips.v1.
            early = await _act(client, assigned_case, action, who, body)
            assert early.status_code == 409, early.text
            async with runtime.transaction() as session:
                case = await session.get(Case, assigned_case)
                assert case is not None
                case.followed_up_at = datetime.now(UTC)
        answer = await _act(client, assigned_case, action, who, body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == status
        assert answer.json()["version"] == version
        assert answer.headers["etag"] == f'"{version}"'

    events = await _events(runtime, assigned_case)
    assert [e["type"] for e in events] == [
        "whistle.case.accepted",
        "whistle.case.started",
        "whistle.case.progress_recorded",
        "whistle.case.resolved",
        "whistle.case.closed",
    ]
    assert [e["data"]["version"] for e in events] == [2, 3, 4, 5, 6]
    assert events[0]["data"]["actor_role"] == "unit_member"
    assert events[-1]["data"]["actor_role"] == "dispatcher"
    assert events[3]["data"]["rectification_due"] == "2026-11-24"


async def test_acting_needs_the_current_version(
    dispatch: tuple[httpx.AsyncClient, Runtime], assigned_case: UUID, as_unit: dict[str, str]
) -> None:
    client, _ = dispatch
    url = f"/v1/cases/{assigned_case}/accept"
    missing = await client.post(url, headers=as_unit)
    assert missing.status_code == 428 and missing.headers["content-type"] == PROBLEM
    stale = await client.post(url, headers={**as_unit, "If-Match": '"7"'})
    assert stale.status_code == 412
    assert stale.headers["etag"] == '"1"'


async def test_two_dispatchers_can_never_both_assign_a_case(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    assigned_case: UUID,
    as_unit: dict[str, str],
    token: TokenFactory,
) -> None:
    client, runtime = dispatch
    await _act(client, assigned_case, "reject", as_unit, {"reason": "非本单位职责"})
    etag = (await client.get(f"/v1/cases/{assigned_case}", headers=as_unit)).headers.get("etag")
    first, second = (
        {"authorization": f"Bearer {token('dispatcher', 'township:T03')}", "If-Match": '"2"'}
        for _ in range(2)
    )
    assert etag is None  # the unit no longer sees the case it sent back
    answers = await asyncio.gather(
        client.post(
            f"/v1/cases/{assigned_case}/assign", json={"unit_id": "T03-CGJ"}, headers=first
        ),
        client.post(
            f"/v1/cases/{assigned_case}/assign", json={"unit_id": "T03-SCJGJ"}, headers=second
        ),
    )
    assert sorted(a.status_code for a in answers) == [200, 412]
    assigned = [e for e in await _events(runtime, assigned_case) if e["type"].endswith("assigned")]
    assert len(assigned) == 1


async def test_an_impossible_step_is_a_conflict_naming_the_possible_ones(
    dispatch: tuple[httpx.AsyncClient, Runtime], assigned_case: UUID, as_dispatcher: dict[str, str]
) -> None:
    client, _ = dispatch
    answer = await _act(client, assigned_case, "close", as_dispatcher)
    assert answer.status_code == 409
    assert set(answer.json()["allowed_actions"]) == {"accept", "reject"}


async def test_another_units_member_cannot_act(
    dispatch: tuple[httpx.AsyncClient, Runtime], assigned_case: UUID, token: TokenFactory
) -> None:
    client, _ = dispatch
    other = {"authorization": f"Bearer {token('unit_member', 'unit:T03-SCJGJ')}"}
    answer = await client.post(
        f"/v1/cases/{assigned_case}/accept", headers={**other, "If-Match": '"1"'}
    )
    assert answer.status_code == 404


async def test_rejected_twice_the_case_goes_to_the_county_whose_assignment_is_final(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    assigned_case: UUID,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
    as_county: dict[str, str],
) -> None:
    client, runtime = dispatch
    first = await _act(client, assigned_case, "reject", as_unit, {"reason": "不属于城管职责"})
    assert first.json()["status"] == "triage" and first.json()["queue"] == "township:T03"
    assert first.json()["unit_id"] is None

    again = await _act(client, assigned_case, "assign", as_dispatcher, {"unit_id": "T03-CGJ"})
    assert again.status_code == 200 and again.json()["status"] == "assigned"
    assert again.json()["staff_id"] is not None, "a certified officer is picked"

    second = await _act(client, assigned_case, "reject", as_unit, {"reason": "仍不属于本单位"})
    assert second.json()["status"] == "arbitration" and second.json()["queue"] == "arbitration"

    by_dispatcher = await _act(
        client, assigned_case, "assign", as_dispatcher, {"unit_id": "T03-CGJ"}
    )
    assert by_dispatcher.status_code == 409

    decided = await _act(client, assigned_case, "assign", as_county, {"unit_id": "T03-SCJGJ"})
    assert decided.status_code == 200 and decided.json()["unit_id"] == "T03-SCJGJ"
    events = await _events(runtime, assigned_case)
    assert [e["type"].rsplit(".", 1)[1] for e in events] == [
        "rejected",
        "assigned",
        "rejected",
        "assigned",
    ]
    assert events[-1]["data"]["rule"] == "arbitration"
    assert events[-1]["data"]["actor_role"] == "county_supervisor"


async def test_a_dispatcher_assigns_only_to_units_of_their_township(
    dispatch: tuple[httpx.AsyncClient, Runtime],
    assigned_case: UUID,
    as_unit: dict[str, str],
    as_dispatcher: dict[str, str],
) -> None:
    client, _ = dispatch
    await _act(client, assigned_case, "reject", as_unit, {"reason": "非本单位"})
    elsewhere = await _act(client, assigned_case, "assign", as_dispatcher, {"unit_id": "T04-CGJ"})
    assert elsewhere.status_code == 403
    unknown = await _act(client, assigned_case, "assign", as_dispatcher, {"unit_id": "T03-NOPE"})
    assert unknown.status_code == 422


async def test_a_rectification_order_needs_its_due_date(
    dispatch: tuple[httpx.AsyncClient, Runtime], assigned_case: UUID, as_unit: dict[str, str]
) -> None:
    client, _ = dispatch
    await _act(client, assigned_case, "accept", as_unit)
    answer = await _act(
        client, assigned_case, "resolve", as_unit, {"resolution": "rectified", "note": "限期整改"}
    )
    assert answer.status_code == 422 and answer.headers["content-type"] == PROBLEM


async def test_routing_reads_the_open_load_of_the_staff_it_may_pick_only(
    dispatch: tuple[httpx.AsyncClient, Runtime],
) -> None:
    """open_load counts held cases per staff member; narrowed to a unit's staff (as routing
    reads it), it counts no one else's, and a case no longer held counts for nobody."""
    _, runtime = dispatch
    now = datetime.now(UTC)
    held = {"LOAD-A": ["assigned", "in_progress"], "LOAD-B": ["assigned"], "LOAD-C": ["closed"]}
    async with runtime.transaction() as session:
        for staff_id, statuses in held.items():
            for status in statuses:
                session.add(_squad_case(status, staff_id, now))
    unit = [Staff(id=s, name=s, role="member") for s in ("LOAD-A", "LOAD-C", "LOAD-D")]
    async with runtime.sessions() as session:
        narrowed = await open_load(session, unit)
        everyone = await open_load(session)
        # A case assigned earlier in the same transaction (an earlier tip of one inbox batch)
        # counts, though not yet flushed: the query runs through the session, which flushes
        # first, not on the bare connection.
        session.add(_squad_case("assigned", "LOAD-D", now))
        in_the_same_batch = await open_load(session, unit)
        await session.rollback()
    assert narrowed == {"LOAD-A": 2}
    assert everyone["LOAD-B"] == 1 and "LOAD-C" not in everyone
    assert in_the_same_batch == {"LOAD-A": 2, "LOAD-D": 1}
