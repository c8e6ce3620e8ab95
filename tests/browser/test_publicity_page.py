"""The public enforcement record (GET /publicity, 行政执法公示) in headless Chromium: dispatch
served by uvicorn on a loopback port, with cases closed long enough ago to be published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from playwright.async_api import Page

from services.dispatch.app import create_app
from services.runtime.settings import Settings

# Chromium and a fresh zh-CN page per test, as for the auditor page.
from tests.browser.test_auditor_page import browser as browser
from tests.browser.test_auditor_page import page as page
from tests.integration.conftest import MovableClock
from tests.integration.test_publicity import CLOSED_AT, a_case, closed_after_a_resolution
from tests.support.serving import serving


@pytest.fixture(scope="module")
async def served(migrated: Settings) -> AsyncIterator[str]:
    clock = MovableClock(CLOSED_AT + timedelta(days=400))
    app = create_app(migrated, clock)
    async with serving(app) as url:
        runtime = app.state.runtime
        # Later than anything else in the session's database: the first on the page.
        await a_case(runtime, "closed", closed_after_a_resolution(CLOSED_AT + timedelta(days=300)))
        yield url


async def test_anyone_reads_the_record_without_a_token(page: Page, served: str) -> None:
    await page.goto(f"{served}/publicity")
    assert await page.title() == "行政执法公示"
    first = page.locator("article").first
    await first.wait_for()
    text = await first.inner_text()
    assert "占道经营、出店经营（CG-001）" in text
    assert "立案处罚" in text
    assert "宋晓丽（执法证号 晋执字14099920240085）" in text
    assert "城关镇 五里铺村" in text
    assert "行政复议" in text
    assert "张三" not in await page.content()
    assert "结案 7 天后公示" in await page.inner_text("#delay")
