"""The township's meeting page (GET /township, 联席会议 · 乡镇工作台) and the meetings on the
department page, in headless Chromium: escalation served by uvicorn on a loopback port with a
clock moved by hand, whistles blown by producing ``WhistleBlown`` as dispatch does.

Township T03's leader refers an overdue whistle of WSJKJ (县卫生健康局, summoned only here) to a
joint meeting, records its sitting and a decision; WSJKJ sees the meeting and the decision on its
page and reports it done. Set ``TOWNSHIP_SCREENSHOT=/tmp/township.png`` to keep a picture.
"""

from __future__ import annotations

import os
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from playwright.async_api import Page

# Chromium and a fresh zh-CN page per test, as for the auditor page.
from tests.browser.test_auditor_page import browser as browser
from tests.browser.test_auditor_page import page as page

# Escalation served with a clock moved by hand, as for the department page.
from tests.browser.test_department_page import Served, look_up
from tests.browser.test_department_page import served as served
from tests.conftest import TokenFactory
from tests.integration.conftest import producer as producer
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import blow, whistle
from tests.support.infra import eventually

DEPARTMENT = "WSJKJ"


async def sign_in(page: Page, token: str) -> None:
    await page.fill("#token", token)
    await page.click("#submit")
    await page.wait_for_selector('body[data-state="done"]')


async def test_a_leader_convenes_on_an_overdue_whistle_and_the_department_reports_done(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    late = whistle(uuid4(), [DEPARTMENT])
    await blow(producer, late, local(2026, 12, 10, 9, 0))  # receipt was due Friday 11th 09:00
    leader = token("township_leader", "township:T03")
    await page.goto(f"{served.url}/township")
    assert await page.title() == "联席会议 · 乡镇工作台"
    row = f'#whistles tbody tr[data-whistle-id="{late.whistle_id}"]'

    async def listed() -> bool:
        await sign_in(page, leader)
        return await page.locator(row).count() == 1

    await eventually(listed, what="the overdue whistle on the township's page")
    assert "报到已超期" in await page.inner_text(row)

    # Convened on the whistle: its department is summoned, the meeting listed.
    await page.check(f"{row} input.refer")
    await page.fill("#held-at", "2026-12-16T14:30")
    await page.fill("#place", "城关镇人民政府三楼会议室")
    await page.fill("#agenda", "卫健局未按时报到，集中研究餐饮油烟扰民整治")
    await page.click("#convene-submit")
    await page.wait_for_selector('body[data-state="done"]')
    assert "已召开联席会议" in await page.inner_text("#status")
    card = page.locator(".meeting").filter(has_text="城关镇人民政府三楼会议室").first
    assert "2026/12/16 14:30" in await card.inner_text()
    assert DEPARTMENT in await card.inner_text()
    meeting_id = await card.get_attribute("data-meeting-id")

    # It sits: attendance and minutes; then a decision for the department.
    served.clock.now = local(2026, 12, 16, 16, 0)
    card = page.locator(f'.meeting[data-meeting-id="{meeting_id}"]')
    await card.locator(f'form.held input[value="{DEPARTMENT}"]').check()
    await card.locator("form.held textarea").fill("议定：卫健局牵头，12月18日前完成整治。")
    await card.locator("form.held button").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已记录出席情况和会议纪要" in await page.inner_text("#status")
    assert f"出席：{DEPARTMENT}" in await card.inner_text()
    await card.locator("select.owner-kind").select_option("department")
    await card.locator("input.owner-code").fill(DEPARTMENT)
    await card.locator("textarea.task").fill("督促餐饮店安装油烟净化设施")
    await card.locator("input.due-at").fill("2026-12-18T16:00")
    await card.locator("form.decide button").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已记录议定事项" in await page.inner_text("#status")
    decision = card.locator("table.decisions tbody tr")
    assert "督促餐饮店安装油烟净化设施" in await decision.inner_text()
    decided = await decision.inner_text()
    assert "办理中" in decided and "2026/12/18 16:00" in decided

    # The department sees the meeting and its decision, and reports it done.
    await page.goto(f"{served.url}/dept")
    await look_up(page, token("county_department", f"dept:{DEPARTMENT}"))
    meeting_row = page.locator(f'#meetings tbody tr[data-meeting-id="{meeting_id}"]')
    assert "督促餐饮店安装油烟净化设施" in await meeting_row.inner_text()
    served.clock.now = local(2026, 12, 17, 10, 0)
    await meeting_row.locator("textarea.decision-result").fill("已安装油烟净化设施")
    await meeting_row.locator("button.decision-done").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已报告议定事项办结" in await page.inner_text("#status")
    assert "按时办结" in await meeting_row.inner_text()
    if shot := os.environ.get("TOWNSHIP_SCREENSHOT"):
        await page.screenshot(path=shot, full_page=True)


async def test_a_dispatchers_token_may_not_convene_and_is_told_in_chinese(
    page: Page, served: Served, token: TokenFactory
) -> None:
    await page.goto(f"{served.url}/township?case={uuid4()}")
    await sign_in(page, token("dispatcher", "township:T03"))
    await page.fill("#held-at", "2026-12-16T14:30")
    await page.fill("#place", "镇政府")
    await page.fill("#agenda", "议题")
    await page.click("#convene-submit")
    await page.wait_for_selector('body[data-state="done"]')
    assert "无权操作" in await page.inner_text("#status")
    await sign_in(page, "")
    assert "未通过身份验证" in await page.inner_text("#status")
