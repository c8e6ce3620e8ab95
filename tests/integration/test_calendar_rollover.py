"""Calendar rollover (issue #15, item 7): a county whose calendar lacks the current year keeps
working, provisionally and loudly, and a year added to the file is counted on without restart.

Escalation starts on Monday 4 January 2027, 09:00 Asia/Shanghai, with the shipped calendar
(2025 and 2026 only) copied to its own config directory. A case assigned then under
P-GENERAL, and a whistle summoning CGJ at the same instant, are counted Monday to Friday:

- first response, 1 working day: Tuesday 5 January 09:00;
- resolution, 7 working days: Wednesday 13 January 09:00;
- CGJ's receipt (报到), 1 working day: Tuesday 5 January 09:00; its reply, due with the case.

Then a 2027 year is written into the file. It is TEST DATA, made up for this test: not the
State Council's 2027 notice (which is not known here). It takes Tuesday 5 and Wednesday 6
January off, so that everything moves: first response and receipt to Thursday 7 January
09:00, resolution and reply to Friday 15 January 09:00.

A second such case gets two more working days on its resolution clock (延期, approved before the
year is added): Friday 15 January, counted Monday to Friday, its reply clock moving with it;
counted again, Tuesday 19 January — the extension's working days counted on the new year too.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from uuid import UUID, uuid4

import httpx
import pytest
import yaml
from sqlalchemy import select

from contracts.envelope import new_event
from contracts.topics import DEADLINES, department_topic
from services.escalation.app import create_app
from services.escalation.calendar_watch import current_calendar
from services.escalation.consumers import Handlers
from services.escalation.models import CaseDeadline, EscalationStep
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import REPO, TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import _assigned, local
from tests.integration.test_whistle_protocol import whistle
from tests.support.infra import eventually

NEW_YEAR_MONDAY = local(2027, 1, 4, 9, 0)

MADE_UP_2027 = {
    "year": 2027,
    "notice": "测试数据（虚构）",
    "title": "TEST DATA, made up for tests/integration/test_calendar_rollover.py",
    "issued": "2026-11-01",
    "source": "none: invented for a test; not the State Council's 2027 notice",
    "holidays": [{"name": "测试假日", "first": "2027-01-05", "last": "2027-01-06"}],
}


@dataclass(frozen=True)
class Escalation:
    http: httpx.AsyncClient
    runtime: Runtime
    calendar_file: Path


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("rollover") / "config"
    shutil.copytree(REPO / "deploy" / "config", target)
    years = [y["year"] for y in yaml.safe_load((target / "calendar.yaml").read_text())["years"]]
    assert years == [2025, 2026], "the test starts from a calendar without 2027"
    return target


@pytest.fixture(scope="module")
async def escalation(migrated: Settings, config_dir: Path) -> AsyncIterator[Escalation]:
    settings = migrated.model_copy(update={"config_dir": config_dir, "calendar_poll_seconds": 0.05})
    app = create_app(settings, MovableClock(NEW_YEAR_MONDAY))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Escalation(client, app.state.runtime, config_dir / "calendar.yaml")


def _handlers(runtime: Runtime) -> Handlers:
    return Handlers(
        lambda: runtime.state["policies"],
        lambda: current_calendar(runtime),
        runtime.clock,
        runtime.counties,
    )


async def _case_with_whistle(runtime: Runtime) -> tuple[UUID, UUID]:
    """A case assigned now and a whistle summoning CGJ now, through escalation's handlers."""
    case_id = uuid4()
    handlers = _handlers(runtime)
    blown = whistle(case_id, ["CGJ"])
    async with runtime.transaction() as session:
        event = new_event("whistle/dispatch", str(case_id), _assigned(case_id), NEW_YEAR_MONDAY)
        await handlers.case_assigned(session, event, "dispatch.cases.v1")
    async with runtime.transaction() as session:
        event = new_event("whistle/dispatch", str(case_id), blown, NEW_YEAR_MONDAY)
        await handlers.whistle_blown(session, event, "dispatch.cases.v1")
    return case_id, blown.whistle_id


async def _extend_resolution(
    http: httpx.AsyncClient, token: TokenFactory, case_id: UUID, *, working_days: int
) -> None:
    """The unit holding the case asks for more time; the township's command centre grants it."""
    unit = {"authorization": f"Bearer {token('unit_member', 'unit:T03-TEAM')}"}
    asked = await http.post(
        f"/v1/cases/{case_id}/extensions",
        json={"kind": "resolution", "extra_working_days": working_days, "reason": "需协调"},
        headers=unit,
    )
    assert asked.status_code == 201, asked.text
    township = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}
    decided = await http.post(
        f"/v1/extensions/{asked.json()['request_id']}/decision",
        json={"approved": True},
        headers=township,
    )
    assert decided.status_code == 200, decided.text


async def _clocks(runtime: Runtime, case_id: UUID) -> dict[str, CaseDeadline]:
    async with runtime.sessions() as session:
        rows = (
            await session.scalars(select(CaseDeadline).where(CaseDeadline.case_id == case_id))
        ).all()
    return {r.kind: r for r in rows}


async def _gauge(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    (line,) = [
        line
        for line in text.splitlines()
        if line.startswith("whistle_escalation_calendar_provisional ")
    ]
    return float(line.split()[1])


def _write_calendar(path: Path, edit: object) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(doc)  # type: ignore[operator]
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


async def test_a_missing_year_starts_provisional_and_a_year_added_is_counted_on(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, runtime = escalation.http, escalation.runtime

    # Started, ready, and saying so: /readyz, the gauge, the calendar endpoint.
    ready = await http.get("/readyz")
    assert ready.status_code == 200, ready.text
    detail = ready.json()["details"]["calendar"]
    assert detail["provisional"] is True and detail["missing_years"] == [2027]
    assert await _gauge(http) == 1
    reader = {"authorization": f"Bearer {token('county_department', 'dept:CGJ')}"}
    calendar = (await http.get("/v1/calendar", headers=reader)).json()
    assert calendar["provisional"] is True and calendar["years"] == [2025, 2026]
    assert calendar["notice"].startswith("2027年节假日安排尚未录入")

    # Deadlines are counted Monday to Friday and flagged: the case's and the whistle's.
    case_id, whistle_id = await _case_with_whistle(runtime)
    before = await _clocks(runtime, case_id)
    assert {k: c.due_at for k, c in before.items()} == {
        "first_response": local(2027, 1, 5, 9, 0),
        "resolution": local(2027, 1, 13, 9, 0),
        "whistle_receipt": local(2027, 1, 5, 9, 0),
        "whistle_reply": local(2027, 1, 13, 9, 0),
    }
    assert all("2027" in (c.provisional_reason or "") for c in before.values())
    listed = (await http.get("/v1/whistles", params={"department": "CGJ"}, headers=reader)).json()
    (mine,) = [w for w in listed["whistles"] if w["whistle_id"] == str(whistle_id)]
    assert mine["receipt"]["provisional"] and mine["reply"]["provisional"]

    extended_case, _ = await _case_with_whistle(runtime)
    await _extend_resolution(http, token, extended_case, working_days=2)
    extended = await _clocks(runtime, extended_case)
    assert extended["resolution"].due_at == local(2027, 1, 15, 9, 0)
    assert extended["whistle_reply"].due_at == local(2027, 1, 15, 9, 0)

    # The county adds 2027 (made-up test data, see the module's docstring): no restart, no
    # request; the file's digest changes and the poller puts it in force.
    _write_calendar(escalation.calendar_file, lambda doc: doc["years"].append(MADE_UP_2027))

    async def counted_again_of(case: UUID) -> dict[str, CaseDeadline] | None:
        clocks = await _clocks(runtime, case)
        return clocks if all(c.provisional_reason is None for c in clocks.values()) else None

    def due_on(*days: int) -> dict[str, datetime]:
        """Each clock's due time, at 09:00 on these days of January 2027."""
        kinds = ("first_response", "resolution", "whistle_receipt", "whistle_reply")
        return {kind: local(2027, 1, day, 9, 0) for kind, day in zip(kinds, days, strict=True)}

    after = await eventually(
        lambda: counted_again_of(case_id), what="every clock of the case counted again"
    )
    assert {k: c.due_at for k, c in after.items()} == due_on(7, 15, 7, 15)
    extended = await eventually(
        lambda: counted_again_of(extended_case), what="the extended case counted again"
    )
    assert {k: c.due_at for k, c in extended.items()} == due_on(7, 19, 7, 19)
    version = current_calendar(runtime).version
    assert all(c.policy_snapshot["calendar_version"] == version for c in after.values())
    # Their warnings are rescheduled: each clock's pending step is its new warning time.
    async with runtime.sessions() as session:
        pending = (
            await session.scalars(
                select(EscalationStep).where(
                    EscalationStep.deadline_id.in_([c.id for c in after.values()]),  # type: ignore[attr-defined]
                    EscalationStep.fired_at.is_(None),  # type: ignore[union-attr]
                    EscalationStep.cancelled_at.is_(None),  # type: ignore[union-attr]
                )
            )
        ).all()
        staged = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.key == str(case_id)))
        ).all()
    warn_at = {c.id: c.warn_at for c in after.values()}
    assert (
        sorted((s.step, s.due_at == warn_at[s.deadline_id]) for s in pending)
        == [("warning", True)] * 4
    )
    recounted = [
        (m.topic, m.event["data"]["kind"], m.event["data"].get("department_code"))
        for m in staged
        if m.event["type"] == "whistle.deadline.recomputed"
    ]
    assert sorted(recounted) == sorted(
        [
            (DEADLINES, "first_response", None),
            (DEADLINES, "resolution", None),
            (DEADLINES, "whistle_receipt", "CGJ"),
            (DEADLINES, "whistle_reply", "CGJ"),
            (department_topic("CGJ"), "whistle_receipt", "CGJ"),
            (department_topic("CGJ"), "whistle_reply", "CGJ"),
        ]
    )

    # No longer provisional anywhere.
    ready = (await http.get("/readyz")).json()
    assert "details" not in ready, ready
    assert await _gauge(http) == 0
    calendar = (await http.get("/v1/calendar", headers=reader)).json()
    assert calendar["provisional"] is False and calendar["notice"] is None
    assert calendar["years"] == [2025, 2026, 2027]


async def test_an_invalid_file_keeps_the_calendar_in_force(
    escalation: Escalation, token: TokenFactory, caplog: pytest.LogCaptureFixture
) -> None:
    http, runtime = escalation.http, escalation.runtime
    admin = {"authorization": f"Bearer {token('admin')}"}
    in_force = current_calendar(runtime).version
    good = escalation.calendar_file.read_text(encoding="utf-8")
    try:
        escalation.calendar_file.write_text(good.replace("Asia/Shanghai", "Europe/Paris"))
        answer = await http.post("/v1/calendar/reload", headers=admin)
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        assert problem["version_in_force"] == in_force
        assert any("timezone" in reason for reason in problem["reasons"])
        assert "未重新加载" in problem["detail"]
        assert current_calendar(runtime).version == in_force
        # The poller saw the same file: logged, and the calendar in force stays.

        async def logged() -> bool:
            return any("not reloaded" in r.getMessage() for r in caplog.records)

        await eventually(logged, what="the refused reload in the log")
        assert current_calendar(runtime).version == in_force
    finally:
        escalation.calendar_file.write_text(good, encoding="utf-8")

    # A department may read the calendar but not reload it.
    dept = {"authorization": f"Bearer {token('county_department', 'dept:CGJ')}"}
    assert (await http.post("/v1/calendar/reload", headers=dept)).status_code == 403
    answer = await http.post("/v1/calendar/reload", headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["version"] == in_force  # the same file, the same version
