"""``kill -HUP`` puts a changed calendar.yaml in force in escalation at once, without waiting for
the digest poll (set to an hour here) and without a restart.

The clock is Monday 4 January 2027 and the calendar the shipped 2025-2026 one; the 2027 year
written in is TEST DATA made up for the test (tests/integration/test_calendar_rollover.py), not
the State Council's notice.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.escalation.app import create_app
from services.runtime.settings import Settings
from tests.conftest import REPO, TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.test_calendar_rollover import MADE_UP_2027, NEW_YEAR_MONDAY, _write_calendar
from tests.support.infra import eventually


@pytest.fixture
async def escalation(migrated: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    shutil.copytree(REPO / "deploy" / "config", tmp_path / "config")
    settings = migrated.model_copy(
        update={"config_dir": tmp_path / "config", "calendar_poll_seconds": 3600.0}
    )
    app = create_app(settings, MovableClock(NEW_YEAR_MONDAY))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_sighup_reloads_the_calendar(
    escalation: httpx.AsyncClient,
    migrated: Settings,
    tmp_path: Path,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Started all the same, with the warning naming the year in the log.
    started = [r.getMessage() for r in caplog.get_records("setup")]
    assert any(m.startswith("PROVISIONAL CALENDAR") and "2027" in m for m in started), started
    reader = {"authorization": f"Bearer {token('county_supervisor')}"}
    before = (await escalation.get("/v1/calendar", headers=reader)).json()
    assert before["missing_years"] == [2027]

    _write_calendar(
        tmp_path / "config" / "calendar.yaml", lambda doc: doc["years"].append(MADE_UP_2027)
    )
    os.kill(os.getpid(), signal.SIGHUP)

    async def reloaded() -> dict | None:
        view = (await escalation.get("/v1/calendar", headers=reader)).json()
        return view if view["years"][-1] == 2027 else None

    after = await eventually(reloaded, what="the SIGHUP reload")
    assert after["provisional"] is False and after["version"] != before["version"]
    assert "details" not in (await escalation.get("/readyz")).json()
