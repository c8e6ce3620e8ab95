"""Provisional deadlines are counted again when the business calendar gains their year.

A case assigned Monday 29 December 2025 under P-GENERAL, on a calendar that only knows 2025:
its resolution clock (7 working days) reaches into 2026 and is counted Monday to Friday —
due Wednesday 7 January, New Year's Day counted as a working day. Once the calendar has 2026
(New Year's Day 1–3 January off, Sunday 4 January worked), it is due Thursday 8 January.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path
from uuid import uuid4

import pytest
import yaml
from sqlalchemy import select

from contracts.envelope import new_event
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.consumers import Handlers
from services.escalation.deadlines import deadlines_for
from services.escalation.models import CaseDeadline, EscalationStep
from services.escalation.policies import load_policies
from services.escalation.recompute import recompute_provisional
from services.runtime.db import Sessions, create_engine, ensure_database, session_factory
from services.runtime.migrations import upgrade
from services.runtime.outbox import OutboxMessage
from tests.integration.test_escalation_clocks import CONFIG, _assigned, local
from tests.support.infra import Infra

ASSIGNED = local(2025, 12, 29, 10, 0)


@pytest.fixture
async def sessions(infra: Infra) -> AsyncIterator[Sessions]:
    url = infra.fresh_database_url("escalation")
    await ensure_database(url)
    await upgrade("escalation", url)
    engine = create_engine(url, pool_size=2)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture
def only_2025(tmp_path: Path) -> BusinessCalendar:
    spec = yaml.safe_load((CONFIG / "calendar.yaml").read_text(encoding="utf-8"))
    spec["years"] = [y for y in spec["years"] if y["year"] == 2025]
    path = tmp_path / "calendar.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True), encoding="utf-8")
    return load_calendar(path, "Asia/Shanghai")


@pytest.fixture(scope="module")
def complete() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


async def _clocks(sessions: Sessions, case_id: object) -> dict[str, CaseDeadline]:
    async with sessions() as session:
        rows = (
            await session.scalars(select(CaseDeadline).where(CaseDeadline.case_id == case_id))
        ).all()
    return {r.kind: r for r in rows}


async def test_a_provisional_clock_is_counted_again_and_its_ladder_moves(
    sessions: Sessions, only_2025: BusinessCalendar, complete: BusinessCalendar
) -> None:
    case_id = uuid4()
    book = load_policies(CONFIG / "policies.yaml")
    handler = Handlers(lambda: book, lambda: only_2025, lambda: ASSIGNED, None).case_assigned
    event = new_event(
        "whistle/dispatch", str(case_id), _assigned(case_id), ASSIGNED.astimezone(UTC)
    )
    async with sessions() as session, session.begin():
        await handler(session, event, "dispatch.cases.v1")
    before = await _clocks(sessions, case_id)
    assert before["resolution"].due_at == local(2026, 1, 7, 10, 0)
    assert before["resolution"].provisional_reason is not None
    assert before["first_response"].provisional_reason is None  # Tuesday 30 December

    # The calendar still lacks 2026: nothing to count again.
    assert await recompute_provisional(sessions, only_2025, lambda: ASSIGNED, counties=None) == 0

    now = local(2025, 12, 29, 11, 0)
    assert await recompute_provisional(sessions, complete, lambda: now, counties=None) == 1
    after = await _clocks(sessions, case_id)
    resolution = after["resolution"]
    general = book.get("P-GENERAL")
    assert general is not None
    (_, expected) = deadlines_for(general, ASSIGNED, complete)
    assert resolution.due_at == local(2026, 1, 8, 10, 0) == expected.due_at
    assert resolution.warn_at == expected.warn_at != before["resolution"].warn_at
    assert resolution.provisional_reason is None
    assert resolution.policy_snapshot["calendar_version"] == complete.version
    assert after["first_response"].due_at == before["first_response"].due_at

    async with sessions() as session:
        steps = (
            await session.scalars(
                select(EscalationStep)
                .where(EscalationStep.deadline_id == resolution.id)  # type: ignore[arg-type]
                .order_by(EscalationStep.id)  # type: ignore[arg-type]
            )
        ).all()
        staged = (
            await session.scalars(select(OutboxMessage).where(OutboxMessage.key == str(case_id)))
        ).all()
    assert [(s.generation, s.step, s.due_at, s.cancelled_at is not None) for s in steps] == [
        (1, "warning", before["resolution"].warn_at, True),
        (2, "warning", expected.warn_at, False),
    ]
    (recomputed,) = [m.event for m in staged if m.event["type"] == "whistle.deadline.recomputed"]
    assert recomputed["data"]["kind"] == "resolution"
    assert recomputed["data"]["calendar_version"] == complete.version
    assert "2026" in recomputed["data"]["provisional_reason"]

    # Counted once: a second run (or the next start-up) finds nothing provisional.
    assert await recompute_provisional(sessions, complete, lambda: now, counties=None) == 0
