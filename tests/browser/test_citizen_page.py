"""The citizen page (GET /) in headless Chromium at a phone's width (375 px): report with a photo
and the phone's location, get the tracking number and access code, follow the tip, and rate it
once dispatch's events (published here as dispatch would) say it is resolved.

Intake is served by uvicorn on a loopback port against the session's PostgreSQL and broker.
Set ``CITIZEN_SCREENSHOT=/tmp/citizen.png`` to keep a picture of the rated tip.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select

from services.intake.app import create_app
from services.intake.models import Tip, TipFeedback
from services.runtime.kafka import create_producer
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.browser.test_auditor_page import browser  # noqa: F401  (the shared Chromium)
from tests.integration.test_attachments import serve
from tests.integration.test_feedback import Dispatch
from tests.support.files import png
from tests.support.infra import eventually

PHONE_SCREEN = {"width": 375, "height": 740}
WHERE = {"latitude": 38.7512, "longitude": 113.2488}


@dataclass(frozen=True)
class Served:
    url: str
    runtime: Runtime


@pytest.fixture(scope="module")
async def served(
    migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    own = migrated.model_copy(update={"attachments_dir": tmp_path_factory.mktemp("uploads")})
    app = create_app(own)
    async for url in serve(app):
        yield Served(url, app.state.runtime)


@pytest.fixture
async def dispatch_events(migrated: Settings) -> AsyncIterator[Dispatch]:
    producer = create_producer(
        migrated.require_kafka(), client_id="test-dispatch", enable_idempotence=False
    )
    await producer.start()
    yield Dispatch(producer)
    await producer.stop()


@pytest.fixture
async def phone(browser: Browser) -> AsyncIterator[Page]:  # noqa: F811
    context = await browser.new_context(
        locale="zh-CN",
        viewport=PHONE_SCREEN,
        is_mobile=True,
        has_touch=True,
        geolocation=WHERE,
        permissions=["geolocation"],
    )
    opened = await context.new_page()
    yield opened
    await context.close()


async def open_page(page: Page, served: Served) -> None:
    await page.goto(served.url)
    await page.wait_for_selector('body[data-state="ready"]')


async def fits_the_screen(page: Page) -> bool:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width <= PHONE_SCREEN["width"]


async def stored_tip(served: Served, tracking_no: str) -> Tip:
    async with served.runtime.sessions() as session:
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
    assert tip is not None
    return tip


async def status_is(served: Served, tracking_no: str, status: str) -> bool:
    return (await stored_tip(served, tracking_no)).status == status


async def test_a_citizen_reports_with_a_photo_follows_the_tip_and_rates_it(
    phone: Page, served: Served, dispatch_events: Dispatch
) -> None:
    page = phone
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await open_page(page, served)
    assert await fits_the_screen(page)
    await page.get_by_label("问题描述（必填）").fill("五里铺村村口有人占道摆摊，车都过不去了")
    photo = png(4242)
    await page.get_by_label("拍照或选择照片").set_input_files(
        {"name": "现场.png", "mimeType": "image/png", "buffer": photo}
    )
    await expect(page.locator("#photo-status")).to_have_text("照片已上传。")
    assert await page.locator("#photo-preview").is_visible()
    await page.get_by_role("button", name="使用我的当前位置").click()
    await expect(page.locator("#location-status")).to_contain_text("已获取位置")
    await page.get_by_label("手机号码（仅用于回访，不会公开）").fill("13812341234")
    await page.get_by_role("button", name="提交反映").click()

    await expect(page.locator("#receipt")).to_be_visible()
    tracking_no = await page.inner_text("#tracking-no")
    code = await page.inner_text("#access-code")
    assert tracking_no.startswith("QX") and len(code) == 6 and code.isdigit()
    assert await fits_the_screen(page)
    tip = await stored_tip(served, tracking_no)
    assert tip.attachments == [hashlib.sha256(photo).hexdigest()]
    assert (tip.lat, tip.lon) == (WHERE["latitude"], WHERE["longitude"])
    assert tip.masked_phone == "138****1234"

    await page.get_by_role("button", name="查看办理进度").click()
    await expect(page.locator("#status-text")).to_have_text("已受理")
    # With the access code the citizen sees the exact point they gave.
    await expect(page.locator("#reported-place")).to_contain_text(
        f"纬度 {WHERE['latitude']}，经度 {WHERE['longitude']}"
    )
    assert await page.get_by_role("tab", name="查询进度").get_attribute("aria-selected") == "true"
    assert await page.locator("#rate-form").is_hidden()

    case_id = await dispatch_events.open(tip.id)
    await dispatch_events.start(case_id, tip.id)
    await dispatch_events.resolve(case_id, tip.id)
    await eventually(lambda: status_is(served, tracking_no, "resolved"), what="resolved")

    await page.get_by_role("button", name="查询", exact=True).click()
    await expect(page.locator("#status-text")).to_have_text("已办结，等待回访")
    assert "承办单位处理中" in await page.inner_text("#timeline")
    await page.get_by_label("基本满意").check()
    await page.get_by_label("意见或建议（可选）").fill("摊位清走了，希望常来看看")
    await page.get_by_role("button", name="提交评价").click()
    await expect(page.locator("#rating-given")).to_contain_text("感谢您的评价")
    await expect(page.locator("#rating-given")).to_contain_text("基本满意")
    assert await page.locator("#rate-form").is_hidden()
    assert await fits_the_screen(page)
    async with served.runtime.sessions() as session:
        rated = await session.get(TipFeedback, (tip.id, 1))
    assert rated is not None and rated.rating == "basically_satisfied"
    assert rated.comment == "摊位清走了，希望常来看看"
    # The access code went in a header, never in a URL (access logs and history keep those).
    looked_up = [url for url in requested if f"/v1/tips/{tracking_no}" in url]
    assert looked_up and not [url for url in looked_up if code in url or "code=" in url]
    if shot := os.environ.get("CITIZEN_SCREENSHOT"):
        await page.screenshot(path=shot, full_page=True)


async def test_the_page_explains_what_is_missing_or_refused_in_chinese(
    phone: Page, served: Served
) -> None:
    page = phone
    await open_page(page, served)
    unlabelled = await page.evaluate(
        """[...document.querySelectorAll("input, textarea")]
            .filter(el => el.labels.length === 0).map(el => el.id)"""
    )
    assert unlabelled == []

    await page.get_by_label("问题描述（必填）").fill("路灯坏了")
    await page.get_by_role("button", name="提交反映").click()
    await expect(page.locator("#report-error")).to_have_text("请使用当前位置或填写详细地址。")

    await page.get_by_label("拍照或选择照片").set_input_files(
        {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": "不是照片".encode() * 100}
    )
    await expect(page.locator("#photo-status")).to_contain_text("不支持的文件类型")
    assert await page.locator("#photo-preview").is_hidden()

    await page.get_by_role("tab", name="查询进度").click()
    await page.get_by_label("受理编号").fill("QX20261121-000000")
    await page.get_by_label("查询码").fill("123456")
    await page.get_by_role("button", name="查询", exact=True).click()
    await expect(page.locator("#track-error")).to_have_text("未找到该编号，或查询码不正确。")
    assert await page.locator("#tip-status").is_hidden()
