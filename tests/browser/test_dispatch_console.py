"""The dispatcher console (GET /console) in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright). Dispatch runs on servers of its own, served by uvicorn on a loopback
port; tips and deadlines reach it over the broker as intake and escalation publish them.

Set ``CONSOLE_SCREENSHOT=/tmp/console`` to keep pictures of the views (…-triage.png, …).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID
from zoneinfo import ZoneInfo

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from playwright.async_api import Browser, Locator, Page, async_playwright
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import (
    Channel,
    Deadline,
    DeadlineRecomputed,
    DeadlinesSet,
    MeetingDecisionRecorded,
    TipReceived,
)
from contracts.topics import DEADLINES, MEETINGS, TIPS
from services.dispatch.app import create_app
from services.dispatch.inspection_service import plan_day
from services.dispatch.models import Case, CaseTip
from services.dispatch.wiring import current_counties, current_reference
from services.runtime.kafka import create_producer
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.browser.test_auditor_page import CHROMIUM, FLAGS
from tests.conftest import TokenFactory
from tests.support.files import png
from tests.support.infra import Infra, embedded_servers, eventually, prepared_on
from tests.support.serving import serving
from tests.support.tips import OFFICER, waiting_case

# Two keywords of weight 1 for two items (占道经营 CG-001, 非法营运 JT-001), and the triage model
# not sure either (about 0.5, under 0.7), so the tip waits in 城关镇's (T03) triage queue. (One
# clause a problem, "路口堵路了，有人拉客", would be read as two matters, each sure.)
UNSURE_TIP = "路口有人拉客堵路了"
GRID = "T03V02G01"  # 城关镇五里铺村
LAPTOP = {"width": 1280, "height": 800}
TABLET = {"width": 768, "height": 1024}


@dataclass(frozen=True)
class Served:
    url: str
    runtime: Runtime
    settings: Settings


@pytest.fixture(scope="module")
def console_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("console-servers")) as servers:
        yield servers


@pytest.fixture(scope="module")
async def served(settings: Settings, console_servers: Infra) -> AsyncIterator[Served]:
    own = await prepared_on(
        console_servers,
        settings,
        ("dispatch",),
        # The session's dispatch merges nothing; the console's split needs merged tips.
        merge_window_hours=72.0,
    )
    app = create_app(own)
    async with serving(app) as url:
        yield Served(url, app.state.runtime, own)


@pytest.fixture(scope="module")
async def producer(served: Served) -> AsyncIterator[AIOKafkaProducer]:
    kafka = create_producer(
        served.settings.require_kafka(), client_id="console-test", enable_idempotence=False
    )
    await kafka.start()
    yield kafka
    await kafka.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is not installed: `make test` installs it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="zh-CN", viewport=LAPTOP)  # type: ignore[arg-type]
    opened = await context.new_page()
    yield opened
    await context.close()


async def unsure_tip(served: Served, producer: AIOKafkaProducer) -> UUID:
    """A low-confidence tip, as intake publishes it; the id of the case dispatch opens."""
    return await published_tip(served, producer, "web", UNSURE_TIP, GRID, status="triage")


async def published_tip(
    served: Served,
    producer: AIOKafkaProducer,
    channel: Channel,
    text: str,
    grid_id: str,
    status: str | None = None,
    inspection_task_id: UUID | None = None,
) -> UUID:
    """A tip as intake publishes it; the id of the case dispatch opens (in ``status``, if
    given)."""
    tip_id, now = uuid7(), datetime.now(UTC)
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"QX{now:%Y%m%d}-{tip_id.int % 1_000_000:06d}",
        channel=channel,
        external_ref=str(inspection_task_id) if inspection_task_id else None,
        inspection_task_id=inspection_task_id,
        text=text,
        grid_id=grid_id,
        received_at=now,
    )
    event = new_event("whistle/intake", str(tip_id), tip, now)
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(tip_id).encode())

    async def opened() -> UUID | None:
        async with served.runtime.sessions() as session:
            case = await session.scalar(select(Case).where(Case.tip_id == tip_id))
        if case is None:
            return None
        assert status is None or case.status == status, case.routing
        return case.id

    return await eventually(opened, within=20, what=f"a case for tip {tip_id}")


async def call(
    served: Served,
    token: str,
    method: str,
    path: str,
    json: object = None,
    if_match: str | None = None,
) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"}
    if if_match is not None:
        headers["If-Match"] = if_match
    async with httpx.AsyncClient(base_url=served.url) as client:
        return await client.request(method, path, headers=headers, json=json)


async def act(served: Served, token: str, case_id: UUID, action: str, body: object) -> None:
    """A step taken by someone else, through the HTTP API."""
    current = await call(served, token, "GET", f"/v1/cases/{case_id}")
    answer = await call(
        served,
        token,
        "POST",
        f"/v1/cases/{case_id}/{action}",
        json=body,
        if_match=current.headers["etag"],
    )
    assert answer.status_code == 200, answer.text


async def sign_in(page: Page, served: Served, token: str, view: str = "") -> None:
    await page.goto(f"{served.url}/console{view}")
    await page.fill("#token", token)
    await page.click("#use-token")
    await page.wait_for_selector('body[data-state="done"]')


async def show(page: Page, served: Served, view: str) -> None:
    await page.goto(f"{served.url}/console#{view}")
    await page.reload()
    await page.wait_for_selector('body[data-state="done"]')


async def screenshot(page: Page, name: str) -> None:
    if prefix := os.environ.get("CONSOLE_SCREENSHOT"):
        await page.screenshot(path=f"{prefix}-{name}.png", full_page=True)


async def test_a_dispatcher_triages_an_unsure_tip_and_sees_it_move_to_the_open_cases(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await unsure_tip(served, producer)
    await sign_in(page, served, token("dispatcher", "township:T03"))
    assert "调度员" in await page.inner_text("#who")
    card = page.locator(f'#triage-list li[data-case-id="{case_id}"]')
    assert UNSURE_TIP in await card.locator(".tip-text").inner_text()
    suggestions = await card.locator(".suggestion").all_inner_texts()
    assert [s.split()[0] for s in suggestions] == ["CG-001", "JT-001"]
    assert "占道经营" in suggestions[0] and "得分 1" in suggestions[0]
    await screenshot(page, "triage")

    await card.locator("select.matter").select_option("CG-001")
    unit = await card.locator("select.unit").input_value()
    assert unit.startswith("T03-"), "the unit routing would pick for CG-001 is proposed"
    await card.get_by_role("button", name="派单").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已派单" in await page.inner_text("#notice")
    assert await page.locator(f'#triage-list li[data-case-id="{case_id}"]').count() == 0

    await page.click("#tab-open")
    await page.wait_for_selector('body[data-state="done"]')
    row = page.locator(f'#open-table tr[data-case-id="{case_id}"]')
    assert await row.get_attribute("data-status") == "assigned"
    assert "已派单" in await row.locator("td.status").inner_text()
    assert "占道经营" in await row.inner_text()
    assert await row.get_attribute("data-colour") == "none"  # no deadlines announced yet

    # Escalation announces the clocks: the warning time has passed, the deadline has not.
    now = datetime.now(UTC)
    clocks = DeadlinesSet(
        case_id=case_id,
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[
            Deadline(kind="first_response", due_at=now + timedelta(hours=1), warn_at=now),
            Deadline(
                kind="resolution", due_at=now + timedelta(days=5), warn_at=now + timedelta(days=4)
            ),
        ],
    )
    event = new_event("whistle/escalation", str(case_id), clocks, now)
    await producer.send_and_wait(DEADLINES, event.to_bytes(), key=str(case_id).encode())

    async def yellow() -> bool:
        await show(page, served, "/open")
        return await row.get_attribute("data-colour") == "yellow"

    await eventually(yellow, within=20, what="the case coloured yellow")
    assert "临近期限" in await row.inner_text()

    # Filters: by unit it is there; by another matter it is not.
    await page.select_option("#filter-unit", unit)
    await page.wait_for_selector('body[data-state="done"]')
    assert await row.count() == 1
    await page.select_option("#filter-matter", "JT-001")
    await page.wait_for_selector('body[data-state="done"]')
    assert await row.count() == 0
    await screenshot(page, "open")


async def test_provisional_deadlines_show_a_banner_until_they_are_counted_again(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    """Escalation counted the resolution clock Monday to Friday (the calendar lacks its year):
    the console marks it 暂定 and says why above the list and on the case's page; once
    escalation counts it again (``DeadlineRecomputed``) the banner goes and the due time moves."""
    case_id = await unsure_tip(served, producer)
    dispatcher = token("dispatcher", "township:T03")
    await act(
        served, dispatcher, case_id, "assign", {"matter_code": "CG-001", "unit_id": "T03-CGJ"}
    )
    now = datetime.now(UTC)
    reason = "the business calendar has no holiday notice for 2027"
    clocks = DeadlinesSet(
        case_id=case_id,
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[
            Deadline(
                kind="first_response",
                due_at=now + timedelta(days=1),
                warn_at=now + timedelta(hours=20),
            ),
            Deadline(
                kind="resolution",
                due_at=now + timedelta(days=5),
                warn_at=now + timedelta(days=4),
                provisional_reason=reason,
            ),
        ],
    )
    event = new_event("whistle/escalation", str(case_id), clocks, now)
    await producer.send_and_wait(DEADLINES, event.to_bytes(), key=str(case_id).encode())
    await sign_in(page, served, dispatcher)
    row = page.locator(f'#open-table tr[data-case-id="{case_id}"]')

    async def marked() -> bool:
        await show(page, served, "/open")
        return await row.locator(".provisional").count() == 1

    await eventually(marked, within=20, what="the provisional clock marked 暂定")
    banner = page.locator("#calendar-notice")
    assert await banner.is_visible()
    assert "节假日安排尚未录入" in await banner.inner_text()
    await show(page, served, f"/case/{case_id}")
    assert await page.locator("#clocks li .provisional").count() == 1  # resolution only
    assert await banner.is_visible()
    await screenshot(page, "provisional")

    recounted = DeadlineRecomputed(
        case_id=case_id,
        kind="resolution",
        round=1,
        old_due_at=now + timedelta(days=5),
        due_at=now + timedelta(days=6),
        warn_at=now + timedelta(days=5),
        calendar_version="test",
        provisional_reason=reason,
    )
    event = new_event("whistle/escalation", str(case_id), recounted, now + timedelta(seconds=1))
    await producer.send_and_wait(DEADLINES, event.to_bytes(), key=str(case_id).encode())

    async def counted_again() -> bool:
        await show(page, served, f"/case/{case_id}")
        return await page.locator("#clocks li .provisional").count() == 0

    await eventually(counted_again, within=20, what="the clock counted again")
    assert await banner.is_hidden()
    resolution = page.locator("#clocks li", has_text="办结（第 1 轮）")
    due = (now + timedelta(days=6)).astimezone(ZoneInfo("Asia/Shanghai"))
    assert f"{due.year}/{due.month}/{due.day}" in await resolution.inner_text()
    await show(page, served, "/open")
    assert await row.locator(".provisional").count() == 0
    assert await banner.is_hidden()


async def test_a_unit_member_accepts_an_assigned_case_on_a_tablet(
    browser: Browser, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await unsure_tip(served, producer)
    await act(
        served,
        token("dispatcher", "township:T03"),
        case_id,
        "assign",
        {"matter_code": "CG-001", "unit_id": "T03-CGJ"},
    )
    context = await browser.new_context(locale="zh-CN", viewport=TABLET)  # type: ignore[arg-type]
    page = await context.new_page()
    try:
        await sign_in(page, served, token("unit_member", "unit:T03-CGJ"))
        assert await page.locator("#tab-mine").is_visible()
        assert await page.locator("#tab-triage").is_hidden()
        row = page.locator(f'#mine-table tr[data-case-id="{case_id}"]')
        assert await row.get_attribute("data-status") == "assigned"
        await row.get_by_role("button", name="接单").click()
        await page.wait_for_selector('body[data-state="done"]')
        assert "已接单" in await page.inner_text("#notice")
        assert await row.get_attribute("data-status") == "accepted"
        # At tablet width the list is one card per case, nothing wider than the screen.
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await screenshot(page, "mine-tablet")

        await row.get_by_role("link", name="查看").click()
        await page.wait_for_selector('body[data-state="done"]')
        assert await page.locator("#do-resolve").is_visible()
        assert await page.locator("#do-reject").count() == 0  # accepted: no longer rejectable

        async def accepted_on_the_timeline() -> bool:
            await show(page, served, f"/case/{case_id}")
            types = await page.locator("ol.timeline li").evaluate_all(
                "items => items.map(i => i.dataset.type)"
            )
            return "whistle.case.accepted" in types

        await eventually(accepted_on_the_timeline, within=20, what="the acceptance recorded")
        timeline = await page.inner_text("#timeline")
        assert "派单" in timeline and "接单" in timeline and "转人工分拨" in timeline
        routing = await page.inner_text("#routing")
        assert "事项识别置信度" in routing and "待调度员人工分拨" in routing
        facts = await page.inner_text("#facts")
        assert "已接单" in facts and "城关镇城市管理派驻组" in facts and UNSURE_TIP in facts
        assert "null" not in await page.inner_text("#view")
        await screenshot(page, "case-tablet")
    finally:
        await context.close()


async def accepted_case_shown(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> tuple[UUID, str]:
    """A case assigned to 城关镇's 城管 squad and accepted, shown to a member of the squad:
    the case id and the member's token."""
    case_id = await unsure_tip(served, producer)
    unit_token = token("unit_member", "unit:T03-CGJ", subject=OFFICER)  # a valid 执法证
    await act(
        served,
        token("dispatcher", "township:T03"),
        case_id,
        "assign",
        {"matter_code": "CG-001", "unit_id": "T03-CGJ"},
    )
    await act(served, unit_token, case_id, "accept", {})
    await sign_in(page, served, unit_token, f"#/case/{case_id}")
    return case_id, unit_token


async def test_a_unit_member_records_the_contact_with_the_citizen(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id, unit_token = await accepted_case_shown(page, served, producer, token)
    await page.get_by_label("联系方式").select_option("visit")
    await page.get_by_label("联系情况（选填）").fill("上门告知已受理")
    await page.click("#do-contact")
    await page.wait_for_selector('body[data-state="done"]')
    assert "已联系群众" in await page.inner_text("#notice")
    case = (await call(served, unit_token, "GET", f"/v1/cases/{case_id}")).json()
    assert case["contacted_at"] is not None and case["status"] == "accepted"


async def test_a_unit_member_rejects_with_a_reason_and_the_case_returns_to_triage(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await unsure_tip(served, producer)
    await act(
        served,
        token("dispatcher", "township:T03"),
        case_id,
        "assign",
        {"matter_code": "JT-001", "unit_id": "T03-CGJ"},
    )
    await sign_in(page, served, token("unit_member", "unit:T03-CGJ"), f"#/case/{case_id}")
    await page.get_by_label("退单原因").fill("非法营运不属本组职责")
    await page.click("#do-reject")
    await page.wait_for_selector('body[data-state="done"]')
    assert "案件现为「待分拨」" in await page.inner_text("#notice")
    # No longer the unit's: its page answers like a missing case.
    assert "案件不存在，或不在您的管辖范围内" in await page.inner_text("#error")

    dispatcher = await page.context.new_page()  # a tab of its own: its own session storage
    await sign_in(dispatcher, served, token("dispatcher", "township:T03"))
    assert await dispatcher.locator(f'#triage-list li[data-case-id="{case_id}"]').count() == 1


async def test_a_stale_edit_shows_the_conflict_message(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id, unit_token = await accepted_case_shown(page, served, producer, token)
    assert await page.get_attribute("#case-title", "data-version") == "3"

    await act(served, unit_token, case_id, "start", {})  # a colleague, meanwhile
    await page.click("#do-start")
    await page.wait_for_selector('body[data-state="done"]')
    assert await page.inner_text("#error") == "案件已被他人修改，请刷新。"

    # A step the case's state does not allow names the steps it does, in Chinese.
    answer = await call(
        served,
        unit_token,
        "POST",
        f"/v1/cases/{case_id}/accept",
        if_match='"4"',
    )
    assert answer.status_code == 409
    message = await page.evaluate(
        "([status, body]) => window.whistleConsole.problemMessage(status, body)",
        [answer.status_code, answer.json()],
    )
    assert message == "案件当前状态不允许此操作。现在可以：记录进展、联系群众、办结。"
    # A close before the 回访 says until when, in the server's words.
    pending = {
        "type": "https://whistle.example/problems/follow-up-pending",
        "detail": "案件办结后须先回访群众：…2026-12-04 10:00 回访期满后方可结案。",
    }
    message = await page.evaluate(
        "([status, body]) => window.whistleConsole.problemMessage(status, body)", [409, pending]
    )
    assert message == pending["detail"]


async def test_a_dispatcher_of_another_township_does_not_see_the_case(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await unsure_tip(served, producer)
    other = token("dispatcher", "township:T01")
    await sign_in(page, served, other)
    assert "城关镇" not in await page.inner_text("#who")
    assert await page.locator(f'[data-case-id="{case_id}"]').count() == 0
    assert UNSURE_TIP not in await page.inner_text("#view")
    await show(page, served, "/open")
    assert await page.locator(f'[data-case-id="{case_id}"]').count() == 0
    await show(page, served, f"/case/{case_id}")
    assert "案件不存在，或不在您的管辖范围内" in await page.inner_text("#error")
    # Nor through the console's API, nor may it assign the case.
    listed = await call(served, other, "GET", "/v1/console/triage")
    assert listed.status_code == 200
    assert str(case_id) not in {row["id"] for row in listed.json()}


async def test_without_a_valid_token_the_console_says_so_in_chinese(
    page: Page, served: Served
) -> None:
    await sign_in(page, served, "not-a-token")
    assert "未通过身份验证" in await page.inner_text("#error")
    assert await page.locator("#tabs").is_hidden()


async def assigned_case(served: Served, producer: AIOKafkaProducer, token: TokenFactory) -> UUID:
    """An unsure tip the dispatcher assigned as 占道经营 (CGJ leads; SCJGJ and GAJ support)."""
    case_id = await unsure_tip(served, producer)
    await act(
        served,
        token("dispatcher", "township:T03"),
        case_id,
        "assign",
        {"matter_code": "CG-001", "unit_id": "T03-CGJ"},
    )
    return case_id


async def test_a_dispatcher_blows_the_whistle_and_sees_it_on_the_timeline(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await assigned_case(served, producer, token)
    await sign_in(page, served, token("dispatcher", "township:T03"), f"#/case/{case_id}")
    form = page.locator('form[data-action="whistle"]')
    # The matter's responsible departments come first, its lead ticked.
    boxes = form.locator('input[name="whistle-department"]')
    assert await boxes.evaluate_all("bs => bs.slice(0, 3).map(b => b.value)") == [
        "CGJ",
        "SCJGJ",
        "GAJ",
    ]
    assert await boxes.evaluate_all("bs => bs.filter(b => b.checked).map(b => b.value)") == ["CGJ"]
    # Beside it, the way to the township's joint meeting (联席会议) on escalation, with the case.
    host = served.url.split("://", 1)[1].split(":")[0]
    meeting = f"http://{host}:{served.settings.escalation_port}/township?case={case_id}"
    assert await page.get_attribute("#to-meeting", "href") == meeting
    await form.get_by_label("公安局").check()
    await form.get_by_label("吹哨理由").select_option(label="需多部门联合")
    assert "联合执法" in await page.inner_text("#whistle-reason-hint")
    await form.get_by_label("情况说明").fill("摊贩暴力抗法，需公安联合处置")
    await page.click("#do-whistle")
    await page.wait_for_selector('body[data-state="done"]')
    assert await page.inner_text("#error") == ""
    assert "已吹哨：召集" in await page.inner_text("#notice")
    assert await page.get_attribute("#case-title", "data-version") == "3"

    async def whistled_on_the_timeline() -> bool:
        await show(page, served, f"/case/{case_id}")
        return (
            await page.locator('ol.timeline li[data-type="whistle.case.whistle_blown"]').count()
            == 1
        )

    await eventually(whistled_on_the_timeline, within=20, what="the whistle on the timeline")
    entry = await page.inner_text('ol.timeline li[data-type="whistle.case.whistle_blown"]')
    assert "吹哨" in entry and "公安局" in entry and "需多部门联合" in entry
    assert "摊贩暴力抗法" in entry
    await screenshot(page, "whistle")


async def test_an_ineligible_whistle_shows_the_refusal_reasons_in_chinese(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await assigned_case(served, producer, token)
    await sign_in(page, served, token("dispatcher", "township:T03"), f"#/case/{case_id}")
    form = page.locator('form[data-action="whistle"]')
    await form.get_by_label("吹哨理由").select_option(label="重大突发")
    await form.get_by_label("情况说明").fill("想请县里来看看")
    await page.click("#do-whistle")
    await page.wait_for_selector('body[data-state="done"]')
    error = await page.inner_text("#error")
    # A general case is no emergency, and the township claimed 占道经营 — but that rule is
    # waived for emergencies, so the one refusal is the urgency.
    assert error.startswith("不符合吹哨条件：重大突发：案件紧急程度"), error
    # Nothing was recorded: the case keeps its version.
    current = await call(served, token("dispatcher", "township:T03"), "GET", f"/v1/cases/{case_id}")
    assert current.json()["version"] == 2


async def test_the_county_proposes_and_the_government_approves_an_out_of_list_tip(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    tip_id, now = uuid7(), datetime.now(UTC)
    words = "公司拖欠工资不发，要求劳动仲裁"
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"QX{now:%Y%m%d}-{tip_id.int % 1_000_000:06d}",
        channel="web",
        text=words,
        grid_id=GRID,
        received_at=now,
        category_hint="LD-005",
    )
    event = new_event("whistle/intake", str(tip_id), tip, now)
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(tip_id).encode())

    async def waiting() -> UUID | None:
        async with served.runtime.sessions() as session:
            case = await session.scalar(select(Case).where(Case.tip_id == tip_id))
        return case.id if case is not None else None

    case_id = await eventually(waiting, within=20, what="the out-of-list case")
    await sign_in(page, served, token("county_supervisor"), "#/admission")
    assert await page.locator("#tab-admission").is_visible()
    card = page.locator(f'#admission-list li[data-case-id="{case_id}"]')
    assert words in await card.locator(".tip-text").inner_text()
    await screenshot(page, "admission")
    form = card.locator('form[data-action="propose"]')
    await form.locator("select.matter").select_option("LD-001")
    await form.locator("select.unit").select_option("T03-RSJ")
    await form.get_by_label("批准文号").fill("五政发〔2026〕12号")
    await form.get_by_label("准入理由").fill("欠薪线索由劳动监察派驻组核查")
    await card.get_by_role("button", name="提出准入").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已提出准入，待县政府批准：案件现为「待分拨」" in await page.inner_text("#notice")
    assert await card.count() == 0

    await sign_in(page, served, token("county_government"), "#/approval")
    assert await page.locator("#tab-approval").is_visible()
    assert not await page.locator("#tab-admission").is_visible()
    card = page.locator(f'#approval-list li[data-case-id="{case_id}"]')
    await screenshot(page, "approval")
    facts = await card.locator("dl.proposal").inner_text()
    for fact in ("县人民政府", "五政发〔2026〕12号", "城关镇劳动监察派驻组"):
        assert fact in facts
    await card.get_by_role("button", name="批准准入").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已批准准入：案件现为「已派单」" in await page.inner_text("#notice")
    assert await card.count() == 0


async def flyposting_tip(served: Served, producer: AIOKafkaProducer, text: str) -> UUID:
    """A tip of 张贴小广告 (CG-008, named by the channel) in 五里铺村's grid T03V02G02, which
    no other test here reports: routed at once, and merged with any other such tip."""
    tip_id, now = uuid7(), datetime.now(UTC)
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"QX{now:%Y%m%d}-{tip_id.int % 1_000_000:06d}",
        channel="grid",
        text=text,
        grid_id="T03V02G02",
        category_hint="CG-008",
        received_at=now,
    )
    event = new_event("whistle/intake", str(tip_id), tip, now)
    await producer.send_and_wait(TIPS, event.to_bytes(), key=str(tip_id).encode())
    return tip_id


async def test_a_dispatcher_splits_a_merged_tip_into_a_case_of_its_own(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    first = "五里铺村口电线杆上贴满了小广告"
    second = "五里铺村口有人在墙上刷办证电话，和电线杆的广告不是一回事"
    opening_tip = await flyposting_tip(served, producer, first)

    async def opened() -> UUID | None:
        async with served.runtime.sessions() as session:
            case = await session.scalar(select(Case).where(Case.tip_id == opening_tip))
        return case.id if case is not None else None

    case_id = await eventually(opened, within=20, what="the first tip's case")
    merged_tip = await flyposting_tip(served, producer, second)

    async def merged() -> UUID | None:
        async with served.runtime.sessions() as session:
            link = await session.get(CaseTip, merged_tip)
        return link.case_id if link is not None else None

    assert await eventually(merged, within=20, what="the second tip merged") == case_id

    await sign_in(page, served, token("dispatcher", "township:T03"), f"#/case/{case_id}")
    assert "诉求（2 条）" in await page.inner_text("#tips-title")
    own = page.locator(f'#tips li[data-tip-id="{opening_tip}"]')
    joined = page.locator(f'#tips li[data-tip-id="{merged_tip}"]')
    assert await own.get_attribute("data-joined-by") == "opening"
    assert first in await own.locator(".tip-text").inner_text()
    assert await own.locator("form.split").count() == 0  # the case's own tip stays
    assert await joined.get_attribute("data-joined-by") == "merge"
    assert second in await joined.locator(".tip-text").inner_text()
    assert "同一网格" in await joined.inner_text()
    await screenshot(page, "tips")

    await joined.get_by_label("拆分原因").fill("刷写办证电话与张贴广告不是同一处问题")
    await joined.get_by_role("button", name="拆分为新案件").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert await page.inner_text("#error") == ""
    notice = await page.inner_text("#notice")
    assert notice.startswith("已拆分：该诉求另立为案件 "), notice
    split_case_id = UUID(notice.removeprefix("已拆分：该诉求另立为案件 ").rstrip("。"))
    assert await page.get_attribute("#case-title", "data-version") == "2"
    assert "拆分为" in await joined.inner_text()
    assert await joined.locator("form.split").count() == 0

    async def split_on_the_timeline() -> bool:
        await show(page, served, f"/case/{case_id}")
        return await page.locator('ol.timeline li[data-type="whistle.case.split"]').count() == 1

    await eventually(split_on_the_timeline, within=20, what="the split on the timeline")
    entry = await page.inner_text('ol.timeline li[data-type="whistle.case.split"]')
    assert "拆分" in entry and "刷写办证电话与张贴广告不是同一处问题" in entry

    # The new case: the split tip is its own, routed as a new tip would be (never re-merged).
    await joined.get_by_role("link", name="新案件").click()
    await page.wait_for_selector(f'#case-title:has-text("{split_case_id}")')
    await page.wait_for_selector('body[data-state="done"]')
    assert "诉求（1 条）" in await page.inner_text("#tips-title")
    facts = await page.inner_text("#facts")
    assert second in facts and "已派单" in facts
    # State and urgency in the words dispatch itself writes (labels.py), never the codes.
    assert "一般" in facts and "general" not in facts and "assigned" not in facts

    open_list = page.locator(f'#open-table tr[data-case-id="{split_case_id}"]')
    await page.click("#tab-open")
    await open_list.wait_for(timeout=10_000)  # the list replaces the case page when loaded
    assert second in await open_list.inner_text()
    await screenshot(page, "split")


async def test_a_major_penalty_waits_for_the_legal_reviewer_who_returns_then_approves_it(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id = await unsure_tip(served, producer)
    unit = token("unit_member", "unit:T03-SCJGJ", subject=OFFICER)
    # 无照经营 (SC-001) is devolved: decided in 城关镇's own name.
    await act(
        served,
        token("dispatcher", "township:T03"),
        case_id,
        "assign",
        {"matter_code": "SC-001", "unit_id": "T03-SCJGJ"},
    )
    for step in ("accept", "start"):
        await act(served, unit, case_id, step, None)

    await sign_in(page, served, unit, f"#/case/{case_id}")
    assert "城关镇" in await page.inner_text("#facts")
    await page.select_option("#resolve-kind", "penalised")
    penalty = page.locator("#resolve-penalty")
    await penalty.get_by_label("罚款", exact=True).check()
    await penalty.get_by_label("没收违法所得、没收非法财物").check()
    await page.fill("#resolve-fine", "20000")
    await page.get_by_label("办理情况").fill("无照经营加工厂，拟罚款并没收违法所得")
    await page.click("#do-resolve")
    await page.wait_for_selector('body[data-state="done"]')
    assert "待法制审核" in await page.inner_text("#facts")

    # Escalation announces the review's own clock, here already past its due time.
    now = datetime.now(UTC)
    review_clock = DeadlinesSet(
        case_id=case_id,
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[
            Deadline(
                kind="legal_review",
                due_at=now - timedelta(hours=1),
                warn_at=now - timedelta(hours=2),
            )
        ],
    )
    event = new_event("whistle/escalation", str(case_id), review_clock, now)
    await producer.send_and_wait(DEADLINES, event.to_bytes(), key=str(case_id).encode())

    reviewer = token("legal_reviewer")
    await sign_in(page, served, reviewer, "#/legal-review")
    assert await page.locator("#tab-legal-review").is_visible()
    assert not await page.locator("#tab-triage").is_visible()
    card = page.locator(f'#legal-review-list li[data-case-id="{case_id}"]')

    async def overdue_on_the_card() -> bool:
        await show(page, served, "/legal-review")
        return "（已超期）" in await card.locator("dl.proposal").inner_text()

    await eventually(overdue_on_the_card, within=20, what="the review overdue on its card")
    await screenshot(page, "legal-review")
    facts = await card.locator("dl.proposal").inner_text()
    for fact in (
        "罚款20000元、没收违法所得、没收非法财物",
        "罚款金额超过10000元",
        "城关镇",
        "审核期限",
    ):
        assert fact in facts
    await show(page, served, f"/case/{case_id}")
    assert "法制审核（第 1 轮）" in await page.inner_text("#clocks")
    await show(page, served, "/legal-review")
    await card.get_by_label("审核意见").fill("违法所得数额未核定，请补充")
    await card.get_by_role("button", name="退回").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已退回承办单位：案件现为「处理中」" in await page.inner_text("#notice")
    assert await card.count() == 0

    again = {
        "resolution": "penalised",
        "note": "补充核定后罚款",
        "penalty": {"kinds": ["fine"], "fine_yuan": 15000},
    }
    await act(served, unit, case_id, "resolve", again)
    await show(page, served, "/legal-review")
    await card.get_by_role("button", name="审核通过").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已审核通过，处罚决定生效：案件现为「已办结」" in await page.inner_text("#notice")


async def test_a_unit_member_completes_an_inspection_task_in_the_console(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    """综合查一次 (issue #15, item 6): 城关镇's 城管 squad sees its task of this week's Tuesday and
    its officer records a finding; another squad's officer records none found; the township's
    dispatcher reads both, completes neither."""
    today = datetime.now(ZoneInfo(served.settings.timezone)).date()
    tuesday = today - timedelta(days=(today.weekday() - 1) % 7)  # this week's, or today
    async with served.runtime.transaction() as session:
        await plan_day(session, current_reference(served.runtime), tuesday, datetime.now(UTC))

    await sign_in(page, served, token("unit_member", "unit:T03-CGJ"), "#/inspections")
    assert await page.locator("#tab-inspections").is_visible()
    card = page.locator("#inspection-list li[data-task-id]").filter(has_text="城关镇综合查一次")
    assert await card.count() == 1
    expected = "planned" if tuesday == today else "missed"
    assert await card.get_attribute("data-state") == expected
    assert "城关镇城市管理派驻组" in await card.inner_text()
    task_id = await card.get_attribute("data-task-id")
    assert task_id is not None
    await card.get_by_label("发现的问题").fill("迎宾路口有商户占道经营")
    await card.get_by_label("所在网格").select_option("T03V01G01")
    await card.get_by_role("button", name="提交发现的问题").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "巡查结果已提交" in await page.inner_text("#notice")
    assert await card.get_attribute("data-state") == "done"
    assert "迎宾路口有商户占道经营" in await card.inner_text()
    assert await card.get_by_role("button", name="未发现问题").count() == 0
    await screenshot(page, "inspections")

    await sign_in(page, served, token("unit_member", "unit:T03-SCJGJ"), "#/inspections")
    other = page.locator("#inspection-list li[data-task-id]").filter(has_text="城关镇综合查一次")
    await other.get_by_role("button", name="未发现问题").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert await other.get_attribute("data-state") == "done"
    assert "未发现问题" in await other.inner_text()

    await sign_in(page, served, token("dispatcher", "township:T03"), "#/inspections")
    joint = page.locator("#inspection-list li[data-task-id]").filter(has_text="城关镇综合查一次")
    assert await joint.count() == 5  # the five units taking part in 城关镇
    done = page.locator('#inspection-list li[data-state="done"]')
    assert await done.count() == 2
    assert await page.locator("#inspection-list form").count() == 0  # a dispatcher reads only

    # The finding, as intake accepts it (channel inspection), opens a case naming its task.
    case_id = await published_tip(
        served,
        producer,
        "inspection",
        "迎宾路口有商户占道经营",
        "T03V01G01",
        inspection_task_id=UUID(task_id),
    )
    await show(page, served, f"/case/{case_id}")
    facts = await page.inner_text("#facts")
    assert "巡查发现" in facts and task_id in facts


async def test_an_officer_uploads_evidence_cites_it_and_sees_the_step_recorded(
    page: Page,
    served: Served,
    producer: AIOKafkaProducer,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    """执法证据: the case page uploads a photo to the case's evidence, the progress step cites
    it, and the timeline shows the officer, their 执法证 number, the place and the evidence,
    which downloads with the console's token."""
    case_id, unit_token = await accepted_case_shown(page, served, producer, token)
    await act(served, unit_token, case_id, "start", {})
    await show(page, served, f"/case/{case_id}")
    photo = tmp_path / "现场.png"
    photo.write_bytes(png(11))
    digest = hashlib.sha256(png(11)).hexdigest()
    await page.set_input_files("#evidence-file", str(photo))
    await page.click("#do-upload")
    await page.wait_for_selector(f'#evidence-list li[data-sha256="{digest}"]')
    assert "证据已上传" in await page.inner_text("#notice")
    assert await page.is_checked(f'input[name="cite-evidence"][value="{digest}"]')

    await page.fill("#progress-note", "已到现场，摊主已收摊")
    await page.fill("#step-lat", "38.7612")
    await page.fill("#step-lon", "113.2251")
    await page.click("#do-progress")
    await page.wait_for_selector('body[data-state="done"]')
    assert "已记录进展" in await page.inner_text("#notice")

    step = 'ol.timeline li[data-type="whistle.case.progress_recorded"]'

    async def recorded() -> bool:
        await show(page, served, f"/case/{case_id}")
        return bool(await page.locator(step).count())

    await eventually(recorded, within=20, what="the progress step on the timeline")
    entry = await page.inner_text(step)
    assert OFFICER in entry and "执法证 晋执字14099920240085" in entry
    assert f"地点 网格 {GRID}（38.7612, 113.2251）" in entry
    async with page.expect_download() as download:
        await page.click(f'{step} button.evidence-link[data-sha256="{digest}"]')
    saved = await (await download.value).path()
    assert saved is not None and saved.read_bytes() == png(11)
    await screenshot(page, "case-evidence")


async def test_a_step_citing_evidence_without_a_valid_certificate_is_refused_in_chinese(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    case_id, unit_token = await accepted_case_shown(page, served, producer, token)
    await act(served, unit_token, case_id, "start", {})
    # An account of the squad that is no certified officer.
    await sign_in(page, served, token("unit_member", "unit:T03-CGJ"), f"#/case/{case_id}")
    await page.fill("#progress-note", "已到现场")
    await page.click("#do-progress")
    await page.wait_for_selector('body[data-state="done"]')
    error = await page.inner_text("#error")
    assert "无有效执法证" in error and "不在执法人员名录中" in error


async def test_a_unit_member_reports_a_joint_meetings_decision_done(
    page: Page, served: Served, producer: AIOKafkaProducer, token: TokenFactory
) -> None:
    """A decision of a joint meeting (联席会议) owned by 城关镇城管派驻组, as escalation records
    it: the unit's member sees it under its cases and reports it done through dispatch."""
    meeting_id, decision_id, now = uuid7(), uuid7(), datetime.now(UTC)
    recorded = MeetingDecisionRecorded(
        meeting_id=meeting_id,
        decision_id=decision_id,
        case_id=uuid7(),
        township_code="T03",
        owner_kind="unit",
        owner_code="T03-CGJ",
        task="每日巡查五里铺村路口",
        due_at=now + timedelta(days=3),
        warn_at=now + timedelta(days=2),
        policy_id="P-GENERAL",
        recorded_by="test-township_leader",
        recorded_at=now,
    )
    event = new_event("whistle/escalation", str(meeting_id), recorded, now)
    await producer.send_and_wait(MEETINGS, event.to_bytes(), key=str(meeting_id).encode())
    row = page.locator(f'#decisions-table tr[data-decision-id="{decision_id}"]')

    async def listed() -> bool:
        await sign_in(page, served, token("unit_member", "unit:T03-CGJ"))
        return await row.count() == 1

    await eventually(listed, what="the unit's decision under its cases")
    assert "办理中" in await row.inner_text()
    await row.locator("textarea.decision-result").fill("已安排每日巡查")
    await row.get_by_role("button", name="报告办结").click()
    await page.wait_for_selector('body[data-state="done"]')
    assert "已报告议定事项办结" in await page.inner_text("#notice")
    assert "已报告办结" in await row.inner_text()
    assert "已安排每日巡查" in await row.inner_text()


async def test_each_card_offers_its_own_countys_units_and_matters(
    page: Page, served: Served, token: TokenFactory
) -> None:
    """Tenancy (issue 18, item 4): the city's supervisor (``county:*``) proposes a 桃林县 case's
    admission from 桃林县's units, and 桃林县's dispatcher assigns from 桃源街道's units, with
    suggestions naming them; no 清溪县 unit is offered either of them."""
    counties = current_counties(served.runtime)
    taolin = {u.name for u in counties["140998"].units.values()}
    qingxi = {u.name for u in counties["140999"].units.values()} - taolin
    out_of_list = await waiting_case(
        served.runtime, "L01", "公司拖欠工资不发，要求劳动仲裁", county="140998", queue="admission"
    )
    unsure = await waiting_case(served.runtime, "L01", "路边有人占道经营", county="140998")

    async def offered(card: Locator) -> set[str]:
        options = card.locator("select.unit option")
        return {name for name in await options.all_inner_texts() if name != "请选择承办单位"}

    await sign_in(page, served, token("county_supervisor", "county:*"), "#/admission")
    card = page.locator(f'#admission-list li[data-case-id="{out_of_list}"]')
    units = await offered(card)
    assert {"桃源街道司法所", "桃林县劳动保障监察大队"} <= units <= taolin
    assert not units & qingxi
    await screenshot(page, "admission-taolin")

    await sign_in(page, served, token("dispatcher", "county:140998", "township:L01"), "#/triage")
    card = page.locator(f'#triage-list li[data-case-id="{unsure}"]')
    units = await offered(card)
    assert units and all(name.startswith("桃源街道") for name in units)
    suggested = await card.locator(".suggestion .detail").all_inner_texts()
    assert suggested and all(line.removeprefix(" → ") in units for line in suggested)
    assert "城关镇" not in await card.inner_text()


async def test_a_city_token_chooses_the_county_of_its_filters(
    page: Page, served: Served, token: TokenFactory
) -> None:
    """A city supervisor (``county:*``) chooses a county for what is about no case — the case
    list's unit and matter filters; a one-county token is offered no choice."""
    taolin = {u.name for u in current_counties(served.runtime)["140998"].units.values()}
    await sign_in(page, served, token("county_supervisor", "county:*"), "#/open")
    choice = page.locator("#county")
    assert await page.locator("#county-choice").is_visible()
    assert await choice.locator("option").all_inner_texts() == ["清溪县", "桃林县"]
    assert "城关镇城市管理派驻组" in await page.locator("#filter-unit").inner_text()

    await choice.select_option(label="桃林县")
    await page.wait_for_selector('body[data-state="done"]')
    units = set(await page.locator("#filter-unit option").all_inner_texts()) - {"全部单位"}
    assert units and units <= taolin

    await sign_in(page, served, token("dispatcher", "county:140998", "township:L01"), "#/open")
    assert not await page.locator("#county-choice").is_visible()
