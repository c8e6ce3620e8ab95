"""Proactive inspection (issue #15, item 6) through the real services: dispatch plans a
Tuesday's tasks (综合查一次, 定岗巡查) once however many planners race, a unit's officer lists and
completes its task, a finding becomes a tip on channel ``inspection`` at intake and a case at
dispatch that names the task, none found is recorded too, roles that may not are refused, and
the ledger counts the tasks planned, done and missed and the cases by who reported them first.

Dispatch and the ledger run on a clock set to Tuesday 2 March 2027 (09:00 in the county), so
that nothing here meets the tasks other modules' dispatch plans on the real date."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from reference.inspections import tasks_due
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.inspection_service import InspectionScheduler
from services.dispatch.models import Case, InspectionTask, TipText
from services.dispatch.wiring import current_counties, current_reference
from services.intake.models import Tip
from services.ledger.app import create_app as create_ledger
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.support.infra import eventually
from tests.support.tips import bearer

TUESDAY = date(2027, 3, 2)
WEDNESDAY = date(2027, 3, 3)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def county_clock() -> MovableClock:
    return MovableClock(datetime(2027, 3, 2, 1, 0, tzinfo=UTC))  # 09:00 in Asia/Shanghai


async def _serve(app: Any) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime


@pytest.fixture(scope="module")
async def inspecting(
    migrated: Settings, county_clock: MovableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """Dispatch on the Tuesday: its own planner plans the day at start, then rests."""
    settings = migrated.model_copy(update={"inspection_planning_interval_seconds": 3600})
    async for pair in _serve(create_dispatch(settings, county_clock)):
        yield pair


@pytest.fixture(scope="module")
async def ledger_then(
    migrated: Settings, county_clock: MovableClock
) -> AsyncIterator[httpx.AsyncClient]:
    async for client, _ in _serve(create_ledger(migrated, county_clock)):
        yield client


async def _citizen_cases_in_march(runtime: Runtime, township: str) -> int:
    """Cases of ``township`` opened in March 2027 for a citizen's tip, as dispatch holds them:
    tips another module left on the broker unread are opened by this module's dispatch, on its
    clock, so the month may hold some besides the inspection's own."""
    march = (datetime(2027, 2, 28, 16, tzinfo=UTC), datetime(2027, 3, 31, 16, tzinfo=UTC))
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Case)
            .join(TipText, TipText.tip_id == Case.tip_id)  # type: ignore[arg-type]
            .where(
                Case.township_code == township,  # type: ignore[arg-type]
                Case.created_at >= march[0],  # type: ignore[operator]
                Case.created_at < march[1],  # type: ignore[operator]
                TipText.channel.in_(("web", "open311", "wechat", "hotline")),  # type: ignore[attr-defined]
            )
        )
    return int(count or 0)


async def _tasks_on(runtime: Runtime, day: date) -> list[InspectionTask]:
    async with runtime.sessions() as session:
        rows = await session.scalars(select(InspectionTask).where(InspectionTask.due_on == day))  # type: ignore[arg-type]
        return list(rows.all())


async def _planned_events(runtime: Runtime, task_ids: list[UUID]) -> int:
    async with runtime.sessions() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.key.in_([str(t) for t in task_ids]))  # type: ignore[attr-defined]
                .where(OutboxMessage.event["type"].astext == "whistle.inspection.planned")  # type: ignore[index]
            )
            or 0
        )


async def _county_tasks(
    runtime: Runtime, day: date, county: str, count: int
) -> list[InspectionTask] | None:
    """The county's tasks of ``day``, once there are ``count``."""
    tasks = [t for t in await _tasks_on(runtime, day) if t.county == county]
    return tasks if len(tasks) >= count else None


async def _planned(runtime: Runtime, day: date) -> list[InspectionTask]:
    expected = len(tasks_due(current_reference(runtime).inspection_plans, day))

    async def probe() -> list[InspectionTask] | None:
        tasks = await _tasks_on(runtime, day)
        return tasks if len(tasks) >= expected else None

    return await eventually(probe, what=f"the tasks of {day}")


async def test_racing_planners_plan_each_task_once(
    inspecting: tuple[httpx.AsyncClient, Runtime],
) -> None:
    _, runtime = inspecting
    await _planned(runtime, TUESDAY)  # the service's own planner, at start
    wednesday = MovableClock(datetime(2027, 3, 3, 0, 30, tzinfo=UTC))
    planners = [
        InspectionScheduler(
            runtime.sessions,
            lambda: current_counties(runtime).values(),
            wednesday,
            runtime.settings.timezone,
            interval_seconds=3600,
        )
        for _ in range(3)
    ]
    # Three replicas at once, twice over, then one after the other.
    for _ in range(2):
        await asyncio.gather(*(planner.run_once() for planner in planners))
    late = [await planner.run_once() for planner in planners]
    assert late == [[], [], []]

    due = tasks_due(current_reference(runtime).inspection_plans, WEDNESDAY)
    tasks = await _tasks_on(runtime, WEDNESDAY)
    assert sorted((t.plan_id, t.unit_id) for t in tasks) == sorted((d.plan_id, d.unit) for d in due)
    assert {"JOINT-T07", "T03-P01", "T03-P02"} <= {t.plan_id for t in tasks}
    assert "JOINT-T03" not in {t.plan_id for t in tasks}  # Tuesday's
    # One whistle.inspection.planned per task, never two.
    assert await _planned_events(runtime, [t.id for t in tasks]) == len(tasks)


async def test_each_county_plans_its_own_townships_and_reads_only_its_own_tasks(
    inspecting: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """Tenancy (docs/scale.md): the service's own planner plans the Tuesday of both sample
    counties, each from its own inspections.yaml — 清溪县 (140999, the default) and 桃林县
    (140998, whose two townships hold their 综合查一次 on Tuesday, the default) — each task and
    its event naming its county; a county's readers see their county's tasks only."""
    client, runtime = inspecting
    counties = current_counties(runtime)
    await _planned(runtime, TUESDAY)
    for code, reference in counties.items():
        due = tasks_due(reference.inspection_plans, TUESDAY)
        assert due, f"{code} plans tasks on a Tuesday"

        tasks = await eventually(
            partial(_county_tasks, runtime, TUESDAY, code, len(due)), what=f"{code}'s tasks"
        )
        assert sorted((t.plan_id, t.unit_id) for t in tasks) == sorted(
            (d.plan_id, d.unit) for d in due
        )
        assert {t.township_code for t in tasks} <= set(reference.townships)
        async with runtime.sessions() as session:
            named = await session.scalars(
                select(OutboxMessage.event["county"].astext).where(
                    OutboxMessage.key.in_([str(t.id) for t in tasks])  # type: ignore[attr-defined]
                )
            )
            assert set(named.all()) == {code}
    assert {t.county for t in await _tasks_on(runtime, TUESDAY)} == {"140999", "140998"}

    # 桃林县's team reads its task; 清溪县's supervisor (a token naming no county: the
    # default's) sees none of 桃林县's, 桃林县's none of 清溪县's, the city's both.
    taolin_team = bearer(token, "unit_member", "county:140998", "unit:L01-TEAM")
    mine = (await client.get("/v1/inspections", headers=taolin_team)).json()
    assert [(t["plan_id"], t["county"]) for t in mine if t["due_on"] == TUESDAY.isoformat()] == [
        ("JOINT-L01", "140998")
    ]
    assert mine[0]["unit_name"] == counties["140998"].units["L01-TEAM"].name
    for scopes, seen in (
        ((), {"140999"}),
        (("county:140998",), {"140998"}),
        (("county:*",), {"140999", "140998"}),
    ):
        listed = await client.get(
            "/v1/inspections", headers=bearer(token, "county_supervisor", *scopes)
        )
        assert {t["county"] for t in listed.json()} == seen, scopes
    # Another county's unit cannot complete it: it is unknown there.
    task_id = mine[0]["id"]
    foreign = await client.post(
        f"/v1/inspections/{task_id}/completion",
        json={"none_found": True},
        headers=bearer(token, "unit_member", "unit:L01-TEAM"),  # no county: the default's
    )
    assert foreign.status_code == 404 and foreign.headers["content-type"] == PROBLEM


async def test_a_unit_sees_its_tasks_and_roles_that_may_not_are_refused(
    inspecting: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = inspecting
    await _planned(runtime, TUESDAY)
    officer = bearer(token, "unit_member", "unit:T03-CGJ")
    listed = await client.get("/v1/inspections", headers=officer)
    assert listed.status_code == 200, listed.text
    mine = [t for t in listed.json() if t["due_on"] == TUESDAY.isoformat()]
    assert [(t["plan_id"], t["unit_id"], t["state"]) for t in mine] == [
        ("JOINT-T03", "T03-CGJ", "planned")
    ]
    assert (mine[0]["kind_text"], mine[0]["state_text"]) == ("综合查一次", "待巡查")
    assert mine[0]["unit_name"] == "城关镇城市管理派驻组"

    dispatcher = await client.get(
        "/v1/inspections", headers=bearer(token, "dispatcher", "township:T03")
    )
    tuesday = [t for t in dispatcher.json() if t["due_on"] == TUESDAY.isoformat()]
    assert {t["township_code"] for t in tuesday} == {"T03"}
    assert ("T03-P02", "T03-TEAM") in {(t["plan_id"], t["unit_id"]) for t in tuesday}
    assert len(tuesday) == 6  # 5 units of 综合查一次, 五里铺村's patrol

    for role, scope in (("grid_worker", "grid:T03V01G01"), ("hotline_operator", "x:y")):
        refused = await client.get("/v1/inspections", headers=bearer(token, role, scope))
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == PROBLEM

    task_id = mine[0]["id"]
    finding = {"findings": [{"text": "迎宾路口有商户占道经营", "grid_id": "T03V01G01"}]}
    # A dispatcher reads the township's tasks but does not complete a unit's inspection.
    as_dispatcher = await client.post(
        f"/v1/inspections/{task_id}/completion",
        json=finding,
        headers=bearer(token, "dispatcher", "township:T03"),
    )
    assert as_dispatcher.status_code == 403
    # Another unit's member is told nothing of it.
    other = await client.post(
        f"/v1/inspections/{task_id}/completion",
        json=finding,
        headers=bearer(token, "unit_member", "unit:T03-SCJGJ"),
    )
    assert other.status_code == 404 and other.json()["title"] == "未找到巡查任务"
    assert other.headers["content-type"] == PROBLEM
    elsewhere = await client.post(
        f"/v1/inspections/{task_id}/completion",
        json={"findings": [{"text": "占道经营", "grid_id": "T01V01G01"}]},
        headers=officer,
    )
    assert elsewhere.status_code == 422 and elsewhere.json()["title"] == "发现问题的网格无效"
    empty = await client.post(f"/v1/inspections/{task_id}/completion", json={}, headers=officer)
    assert empty.status_code == 422  # an empty form is not "none found"
    [still] = [t for t in await _tasks_on(runtime, TUESDAY) if str(t.id) == task_id]
    assert still.status == "planned"


async def test_a_finding_opens_a_case_through_intake_and_none_found_is_recorded(
    inspecting: tuple[httpx.AsyncClient, Runtime],
    intake: tuple[httpx.AsyncClient, Runtime],
    token: TokenFactory,
) -> None:
    client, runtime = inspecting
    tasks = await _planned(runtime, TUESDAY)
    [patrol] = [t for t in tasks if t.plan_id == "T03-P02"]
    officer = bearer(token, "unit_member", "unit:T03-TEAM")
    text = "五里铺村口有人占道摆摊，堵住了路"
    done = await client.post(
        f"/v1/inspections/{patrol.id}/completion",
        json={"findings": [{"text": text, "grid_id": "T03V02G01"}]},
        headers=officer,
    )
    assert done.status_code == 200, done.text
    assert (done.json()["state"], done.json()["findings"][0]["text"]) == ("done", text)
    again = await client.post(
        f"/v1/inspections/{patrol.id}/completion", json={"none_found": True}, headers=officer
    )
    assert again.status_code == 409 and again.json()["title"] == "巡查任务已完成"

    async def case() -> Case | None:
        async with runtime.sessions() as session:
            return await session.scalar(
                select(Case).where(Case.inspection_task_id == patrol.id)  # type: ignore[arg-type]
            )

    opened = await eventually(case, what="the finding's case")
    assert (opened.township_code, opened.grid_id) == ("T03", "T03V02G01")
    auditor = bearer(token, "auditor")
    shown = await client.get(f"/v1/cases/{opened.id}", headers=auditor)
    assert shown.json()["inspection_task_id"] == str(patrol.id)

    _, intake_runtime = intake
    async with intake_runtime.sessions() as session:
        tip = await session.scalar(select(Tip).where(Tip.id == opened.tip_id))  # type: ignore[arg-type]
    assert tip is not None and (tip.channel, tip.external_ref) == ("inspection", str(patrol.id))

    # Nothing found is a result: recorded, and nothing sent to intake.
    [joint] = [t for t in tasks if t.plan_id == "JOINT-T03" and t.unit_id == "T03-SCJGJ"]
    nothing = await client.post(
        f"/v1/inspections/{joint.id}/completion",
        json={"none_found": True},
        headers=bearer(token, "unit_member", "unit:T03-SCJGJ"),
    )
    assert nothing.status_code == 200, nothing.text
    assert (nothing.json()["state"], nothing.json()["findings"]) == ("done", [])


async def test_the_ledger_counts_tasks_and_cases_by_who_reported_first(
    inspecting: tuple[httpx.AsyncClient, Runtime],
    ledger_then: httpx.AsyncClient,
    county_clock: MovableClock,
    token: TokenFactory,
) -> None:
    """Two days on (Thursday), Tuesday's and Wednesday's tasks left undone are missed."""
    _, runtime = inspecting
    march = [t for d in (TUESDAY, WEDNESDAY) for t in await _tasks_on(runtime, d)]
    t03 = [t for t in march if t.township_code == "T03"]
    done = [t for t in t03 if t.status == "done"]
    assert len(done) == 2  # by the test before: a finding, and none found
    county_clock.advance(timedelta(days=2))
    auditor = bearer(token, "auditor")
    citizens = await _citizen_cases_in_march(runtime, "T03")

    async def counted() -> dict[str, Any] | None:
        answer = await ledger_then.get(
            "/v1/kpis",
            params={"period": "month", "at": "2027-03-02", "group_by": "township"},
            headers=auditor,
        )
        assert answer.status_code == 200, answer.text
        groups = {g["key"]: g for g in answer.json()["groups"]}
        row = groups.get("T03")
        if row is None or row["counts"]["inspections_planned"] < len(t03):
            return None
        if (
            row["counts"]["inspections_done"] < 2
            or not row["counts"]["reported_first_by_inspection"]
            or row["counts"]["reported_first_by_citizen"] < citizens
        ):
            return None
        return answer.json() | {"row": row}

    answer = await eventually(counted, what="T03's inspection counts")
    counts = answer["row"]["counts"]
    assert counts["inspections_planned"] == len(t03)
    assert counts["inspections_done"] == 2
    assert counts["inspections_missed"] == len(t03) - 2
    assert counts["inspection_findings"] == 1
    assert counts["reported_first_by_inspection"] == 1
    # The finding is not a citizen's: only the citizens' cases dispatch opened count so (none,
    # unless another module left tips unread for this module's dispatch to open).
    assert counts["reported_first_by_citizen"] == citizens
    rate = answer["row"]["rates"]["inspection_done_rate"]
    assert (rate["numerator"], rate["denominator"]) == (2, len(t03))
    assert "巡查完成率" in answer["definitions"]["inspection_done_rate"]["name"]
    assert "inspections_missed" in answer["count_definitions"]
    assert "inspection" in answer["count_definitions"]["reported_first_by_inspection"]
