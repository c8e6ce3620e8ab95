"""The department page (GET /dept, 吹哨报到 · 部门工作台) in headless Chromium: escalation served by
uvicorn on a loopback port with a clock moved by hand, whistles blown by producing
``WhistleBlown`` onto ``dispatch.cases.v1`` as dispatch does.

Department ZRZYJ (县自然资源局) is summoned only here. Set ``DEPT_SCREENSHOT=/tmp/dept.png`` to
keep a picture of the page.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Page

from contracts.topics import WHISTLES
from services.dispatch.app import create_app as create_dispatch
from services.escalation.app import create_app
from services.launcher.embedded import free_port
from services.runtime.settings import Settings

# Chromium and a fresh zh-CN page per test, as for the auditor page.
from tests.browser.test_auditor_page import browser as browser
from tests.browser.test_auditor_page import page as page
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.integration.conftest import producer as producer
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import about, blow, find_on_topic, whistle
from tests.support.files import png
from tests.support.infra import eventually
from tests.support.serving import serving

DEPARTMENT = "ZRZYJ"


@dataclass(frozen=True)
class Served:
    url: str
    clock: MovableClock


@pytest.fixture(scope="module")
async def served(migrated: Settings) -> AsyncIterator[Served]:
    clock = MovableClock(local(2026, 12, 15, 10, 0))  # Tuesday
    app = create_app(migrated, clock)
    async with serving(app) as url:
        yield Served(url, clock)


async def look_up(page: Page, token: str, department: str = "") -> None:
    await page.fill("#token", token)
    await page.fill("#department", department)
    await page.click("#submit")
    await page.wait_for_selector('body[data-state="done"]')


async def test_a_department_sees_its_whistles_and_reports_in(
    page: Page,
    served: Served,
    producer: AIOKafkaProducer,
    token: TokenFactory,
    migrated: Settings,
    tmp_path: Path,
) -> None:
    fresh = whistle(uuid4(), [DEPARTMENT])
    late = whistle(uuid4(), [DEPARTMENT, "GAJ"])
    await blow(producer, late, local(2026, 12, 10, 9, 0))  # receipt was due Friday 11th 09:00
    await blow(producer, fresh, local(2026, 12, 15, 9, 0))
    await page.goto(f"{served.url}/dept")
    assert await page.title() == "吹哨报到 · 部门工作台"
    dept = token("county_department", f"dept:{DEPARTMENT}")
    row = f'#open tbody tr[data-whistle-id="{fresh.whistle_id}"]'

    async def listed() -> bool:
        # The department field is filled from the token's own dept: scope.
        await look_up(page, dept)
        return await page.locator(row).count() == 1

    await eventually(listed, what="the fresh whistle on the page")
    assert await page.input_value("#department") == DEPARTMENT
    assert "待报到" in await page.inner_text(row)
    assert "2026/12/16 09:00" in await page.inner_text(row)  # 报到时限: a working day
    overdue = page.locator(f'#overdue tbody tr[data-whistle-id="{late.whistle_id}"]')
    await overdue.wait_for()
    assert "报到" in await overdue.inner_text() and "2026/12/11 09:00" in await overdue.inner_text()
    assert "报到已超期" in await page.inner_text(
        f'#open tbody tr[data-whistle-id="{late.whistle_id}"]'
    )
    assert await page.inner_text("#overdue-count") == "共 1 件"

    served.clock.now = local(2026, 12, 15, 10, 30)
    await page.fill(f"{row} input.receipt-no", "ZR-2026-0042")
    await page.click(f"{row} button.report")
    await page.wait_for_selector('body[data-state="done"]')
    assert "已报到，回执号 ZR-2026-0042" in await page.inner_text("#status")
    assert "已报到，待回复" in await page.inner_text(row)
    assert "回执号 ZR-2026-0042" in await page.inner_text(row)
    assert await page.locator(f"{row} button.reply").count() == 1

    await page.fill(f"{row} textarea.result", "已现场核查，责令恢复原状")
    # A photo as evidence: uploaded for the whistle, then cited by the reply.
    photo = tmp_path / "现场.png"
    photo.write_bytes(png(31))
    await page.set_input_files(f"{row} input.evidence", str(photo))
    await page.click(f"{row} button.reply")
    await page.wait_for_selector('body[data-state="done"]')
    assert "已回复办理结果" in await page.inner_text("#status")
    (replied,) = await find_on_topic(
        migrated.kafka_bootstrap or "", WHISTLES, about(fresh.whistle_id, "whistle.whistle.replied")
    )
    assert json.loads(replied.value)["data"]["evidence"] == [hashlib.sha256(png(31)).hexdigest()]
    assert await page.locator(row).count() == 0, "a replied whistle is no longer open"
    if shot := os.environ.get("DEPT_SCREENSHOT"):
        await page.screenshot(path=shot, full_page=True)


async def test_another_departments_token_is_refused_in_chinese(
    page: Page, served: Served, token: TokenFactory
) -> None:
    await page.goto(f"{served.url}/dept")
    await look_up(page, token("county_department", "dept:GAJ"), DEPARTMENT)
    assert "无权操作" in await page.inner_text("#status")
    assert await page.locator("#open-section").is_hidden()
    await look_up(page, "", DEPARTMENT)
    assert "未通过身份验证" in await page.inner_text("#status")


async def test_provisional_deadlines_are_marked_and_a_missing_year_is_announced(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    """A whistle blown on New Year's Eve 2026: its receipt (报到) falls in 2027, which the
    shipped calendar lacks, so it is counted Monday to Friday and marked 暂定 with a note. Then
    the county is in 2027 itself: the page says the year's holidays are not entered yet."""
    eve = whistle(uuid4(), [DEPARTMENT])
    await blow(producer, eve, local(2026, 12, 31, 9, 0))
    dept = token("county_department", f"dept:{DEPARTMENT}")
    row = f'#open tbody tr[data-whistle-id="{eve.whistle_id}"]'
    await page.goto(f"{served.url}/dept")

    async def listed() -> bool:
        await look_up(page, dept)
        return await page.locator(row).count() == 1

    await eventually(listed, what="the New Year's Eve whistle on the page")
    # 报到 a working day later: Friday 1 January, counted as a weekday until 2027 is entered.
    assert "2027/01/01 09:00" in await page.inner_text(row)
    assert await page.locator(f"{row} .provisional").count() == 2  # receipt and reply
    notice = page.locator("#calendar-notice")
    assert "部分期限所在年度的节假日安排尚未录入" in await notice.inner_text()

    before = served.clock.now
    served.clock.now = local(2027, 1, 4, 9, 0)
    try:
        await look_up(page, dept)
        assert (await notice.inner_text()).startswith("2027年节假日安排尚未录入")
    finally:
        served.clock.now = before
    await look_up(page, dept)
    assert "部分期限所在年度" in await notice.inner_text()


@dataclass(frozen=True)
class Referring:
    """The department page (escalation) and dispatch, each told the other's origin."""

    page_url: str
    dispatch_url: str


@pytest.fixture(scope="module")
async def referring(migrated: Settings) -> AsyncIterator[Referring]:
    escalation_port, dispatch_port = free_port(), free_port()
    own = migrated.model_copy(
        update={
            "dispatch_public_origin": f"http://127.0.0.1:{dispatch_port}",
            "department_page_origin": f"http://127.0.0.1:{escalation_port}",
        }
    )
    async with (
        serving(create_dispatch(own), dispatch_port) as dispatch_url,
        serving(create_app(own), escalation_port) as page_url,
    ):
        yield Referring(page_url, dispatch_url)


async def test_a_department_refers_a_townships_matter_from_its_page(
    page: Page, referring: Referring, token: TokenFactory
) -> None:
    """移送 from the department page: the form posts to dispatch (another origin, allowed by
    the page's CSP and dispatch's CORS for this one path) and says the township's case, or
    why the rules refuse it."""
    answer = await page.goto(f"{referring.page_url}/dept")
    assert answer is not None
    policy = answer.headers["content-security-policy"]
    assert f"connect-src 'self' {referring.dispatch_url};" in policy
    await page.fill("#token", token("county_department", "dept:CGJ"))
    await page.fill("#department", "CGJ")
    await page.fill("#referral-matter", "CG-001")
    await page.fill("#referral-township", "T03")
    await page.fill("#referral-grid", "T03V02G01")
    await page.fill("#referral-place", "五里铺村村口")
    await page.fill("#referral-facts", "巡查发现村口有人占道摆摊，影响通行，依法移送")
    await page.click("#refer")
    await page.wait_for_selector('body[data-state="done"]')
    result = await page.inner_text("#referral-result")
    assert result.startswith("已移送：案件 ") and "已派单" in result and "T03-CGJ" in result, result
    assert await page.input_value("#referral-facts") == ""  # the form is ready for the next

    # 电梯安全隐患 (SC-006) is county-only: refused with the rules' words, nothing opened.
    await page.fill("#referral-matter", "SC-006")
    await page.fill("#referral-township", "T03")
    await page.fill("#referral-facts", "检查发现小区电梯安全隐患")
    await page.click("#refer")
    await page.wait_for_selector('body[data-state="done"]')
    refused = await page.inner_text("#referral-result")
    assert refused.startswith("不予移送：") and "县级专属事项" in refused, refused
    assert await page.get_attribute("#referral-result", "class") == "bad"
