"""Who may read a case's clocks (``GET /v1/cases/{id}/deadlines``): the same visibility as
dispatch — a township's dispatcher its own township's cases, a department the cases it was
summoned to, the county (``township:*``, ``county_supervisor``, ``auditor``) every case. A case
the caller may not see is answered as a missing one (404), as dispatch answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import httpx
import pytest

from contracts.envelope import new_event
from services.escalation.app import create_app
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_escalation_clocks import _assigned
from tests.integration.test_extensions import ASSIGNED, _handlers
from tests.integration.test_whistle_protocol import whistle

Escalation = tuple[httpx.AsyncClient, Runtime]


@pytest.fixture(scope="module")
async def escalation(migrated: Settings) -> AsyncIterator[Escalation]:
    app = create_app(migrated, MovableClock(ASSIGNED))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime


async def _case_in_t03(runtime: Runtime, summoned: list[str]) -> UUID:
    """A case assigned in township T03 (clocks started), and a whistle summoning ``summoned``."""
    case_id = uuid4()
    handlers = _handlers(runtime)
    assigned = new_event("whistle/dispatch", str(case_id), _assigned(case_id), ASSIGNED)
    async with runtime.transaction() as session:
        await handlers.case_assigned(session, assigned, "dispatch.cases.v1")
    if summoned:
        blown = new_event("whistle/dispatch", str(case_id), whistle(case_id, summoned), ASSIGNED)
        async with runtime.transaction() as session:
            await handlers.whistle_blown(session, blown, "dispatch.cases.v1")
    return case_id


@pytest.mark.parametrize(
    ("who", "status"),
    [
        (("dispatcher", "township:T03"), 200),
        (("dispatcher", "township:*"), 200),
        (("dispatcher", "township:T01"), 404),
        (("dispatcher",), 404),
        (("county_department", "dept:CGJ"), 200),
        (("county_department", "dept:*"), 200),
        (("county_department", "dept:SCJGJ"), 404),
        (("county_department",), 404),
        (("county_supervisor", "township:*"), 200),
        (("auditor",), 200),
    ],
)
async def test_deadlines_are_read_only_where_the_case_is_visible(
    escalation: Escalation, token: TokenFactory, who: tuple[str, ...], status: int
) -> None:
    http, runtime = escalation
    case_id = await _case_in_t03(runtime, ["CGJ"])
    answer = await http.get(
        f"/v1/cases/{case_id}/deadlines", headers={"authorization": f"Bearer {token(*who)}"}
    )
    assert answer.status_code == status, answer.text
    if status == 200:
        assert answer.json()["deadlines"], "the visible case's clocks"
    else:
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_an_unknown_case_reads_as_missing_for_the_county(
    escalation: Escalation, token: TokenFactory
) -> None:
    http, _ = escalation
    answer = await http.get(
        f"/v1/cases/{uuid4()}/deadlines",
        headers={"authorization": f"Bearer {token('county_supervisor', 'township:*')}"},
    )
    assert answer.status_code == 404
