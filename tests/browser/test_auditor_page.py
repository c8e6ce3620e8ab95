"""The auditor page (GET /auditor) in headless Chromium: Debian's /usr/bin/chromium driven by
Playwright, no browser download. The ledger runs on servers of its own, served by uvicorn on a
loopback port so that the browser reaches it as an auditor would.

Set ``AUDITOR_SCREENSHOT=/tmp/auditor.png`` to keep a picture of the verified trail.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from contracts.envelope import new_event
from contracts.events import CaseTriageRequired, PersonalDataErased, TipReceived
from contracts.topics import CASES as CASES_TOPIC
from contracts.topics import TIPS
from services.ledger.app import create_app
from services.ledger.merkle import Frontier, NodeId, inclusion_plan, verify_inclusion
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_ledger import case_events, forged, record
from tests.support.infra import Infra, embedded_servers, prepared_on
from tests.support.serving import serving
from tests.support.tamper import superuser_connection

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CASES = 5  # three entries each


@dataclass(frozen=True)
class Served:
    url: str
    runtime: Runtime
    cases: list[UUID]
    settings: Settings


@pytest.fixture(scope="module")
def page_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("auditor-servers")) as servers:
        yield servers


@pytest.fixture(scope="module")
async def served(settings: Settings, page_servers: Infra) -> AsyncIterator[Served]:
    own = await prepared_on(
        page_servers, settings, ("ledger",), ledger_tree_head_interval_seconds=3600
    )
    app = create_app(own)
    async with serving(app) as url:
        runtime: Runtime = app.state.runtime
        cases = [uuid4() for _ in range(CASES)]
        for n, case_id in enumerate(cases):
            await record(runtime, case_events(case_id, n))
        yield Served(url, runtime, cases, own)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("Debian's chromium is not installed: `make test` installs it")
    async with async_playwright() as playwright:
        # Playwright gives every launch a fresh, empty profile directory of its own.
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(locale="zh-CN")
    opened = await context.new_page()
    yield opened
    await context.close()


async def sign_head(served: Served, token: TokenFactory) -> int:
    async with httpx.AsyncClient(base_url=served.url) as client:
        response = await client.post(
            "/v1/tree-heads", headers={"authorization": f"Bearer {token('auditor')}"}
        )
    assert response.status_code in (200, 201), response.text
    size: int = response.json()["tree_size"]
    return size


async def look_up(page: Page, served: Served, case_id: UUID, token: str = "") -> None:
    await page.goto(f"{served.url}/auditor")
    await page.fill("#token", token)
    await page.fill("#case-id", str(case_id))
    await page.click("#submit")
    await page.wait_for_selector('body[data-state="done"]', timeout=15_000)


async def test_a_recorded_cases_trail_is_verified_in_the_browser(
    page: Page, served: Served, token: TokenFactory
) -> None:
    await sign_head(served, token)
    await look_up(page, served, served.cases[1], token("auditor"))
    status = await page.inner_text("#status")
    assert "全部 3 条记录已验证" in status, status
    marks = await page.locator("#trail tbody .mark").all_inner_texts()
    assert marks == ["已验证"] * 3
    seqs = await page.locator("#trail tbody td.seq").all_inner_texts()
    assert seqs == ["3", "4", "5"]
    assert await page.get_attribute("#head-signature", "data-state") == "verified"
    assert "转人工分拨" in await page.inner_text("#trail tbody")
    assert "第1件：无法定位" in await page.inner_text("#trail tbody")
    # The token is kept in this tab's session storage only.
    stored = await page.evaluate("sessionStorage.getItem('whistle.auditor.token')")
    assert stored and stored.count(".") == 2  # a JWT
    assert await page.evaluate("localStorage.length") == 0
    if shot := os.environ.get("AUDITOR_SCREENSHOT"):
        await page.screenshot(path=shot, full_page=True)


async def test_an_entry_recorded_after_the_latest_head_waits_for_the_next(
    page: Page, served: Served, token: TokenFactory
) -> None:
    case_id = uuid4()
    await record(served.runtime, case_events(case_id, 7)[:2])
    size = await sign_head(served, token)
    await record(served.runtime, case_events(case_id, 7)[2:])
    await look_up(page, served, case_id, token("auditor"))
    marks = await page.locator("#trail tbody .mark").all_inner_texts()
    assert marks == ["已验证", "已验证", "待核验"]
    assert f"序号 {size} 记录于最新签名树头之后" in await page.inner_text("#trail tbody")
    assert "验证失败" not in await page.inner_text("body")


@pytest.fixture
async def superuser(served: Served) -> AsyncIterator[asyncpg.Connection]:
    async with superuser_connection(served.settings.database_url_for("ledger")) as conn:
        yield conn


async def test_a_row_changed_by_a_superuser_fails_verification_naming_the_entry(
    page: Page, served: Served, token: TokenFactory, superuser: asyncpg.Connection
) -> None:
    await sign_head(served, token)
    case_id = served.cases[2]
    target = 7  # the case's second entry (seq 6, 7, 8)
    async with superuser.transaction():
        await superuser.execute("SET LOCAL session_replication_role = replica")
        row = await superuser.fetchrow("SELECT canonical FROM ledger_entry WHERE seq = $1", target)
        await superuser.execute(
            "UPDATE ledger_entry SET canonical = $2 WHERE seq = $1",
            target,
            forged(row["canonical"]),
        )
    await look_up(page, served, case_id, token("auditor"))
    status = await page.inner_text("#status")
    assert "验证失败：1 处问题" in status, status
    assert f"序号 {target} 的记录内容与签名树头" in status
    marks = await page.locator("#trail tbody .mark").all_inner_texts()
    assert marks == ["已验证", "验证失败", "已验证"]
    failed = page.locator(f'#trail tbody tr[data-seq="{target}"]')
    assert "已现场处置" in await failed.inner_text()  # what the forger wrote, shown as failed
    assert await failed.evaluate("row => getComputedStyle(row.querySelector('.mark')).color") == (
        "rgb(198, 40, 40)"
    )


async def test_without_a_token_the_page_says_so_in_chinese(page: Page, served: Served) -> None:
    await look_up(page, served, served.cases[0])
    status = await page.inner_text("#status")
    assert "未通过身份验证：需要有效的审计员访问令牌" in status, status
    assert "服务器说明：A bearer token is required." in status
    assert await page.locator("#trail").is_hidden()


async def test_a_token_without_the_role_and_a_malformed_case_id_are_explained(
    page: Page, served: Served, token: TokenFactory
) -> None:
    await look_up(page, served, served.cases[0], token("dispatcher"))
    assert "无权查看" in await page.inner_text("#status")
    await page.fill("#case-id", "not-a-case")
    await page.click("#submit")
    await page.wait_for_selector('body[data-state="done"]')
    assert "案件编号格式不正确" in await page.inner_text("#status")


async def test_the_pages_inclusion_verifier_agrees_with_the_ledgers_for_every_tree_up_to_40(
    page: Page, served: Served
) -> None:
    """The JavaScript RFC 9162 verifier against services/ledger/merkle.py's: every leaf of every
    size accepted, and for the wrong leaf, index or size the same answer as the Python one."""
    await page.goto(f"{served.url}/auditor")
    frontier, nodes, leaves = Frontier(), dict[NodeId, bytes](), []
    cases = []
    for size in range(1, 41):
        leaf = bytes([size]) * 32
        leaves.append(leaf)
        nodes.update(frontier.append(leaf))
        root = frontier.root()
        for index in range(size):
            path = inclusion_plan(index, size).hashes(nodes)
            other = (index + 1) % size
            for leaf_, index_, size_ in [
                (leaves[index], index, size),
                (leaves[other], index, size),
                (leaves[index], other, size),
                (leaves[index], index, size + 1),
                (leaves[index], index, size - 1),
            ]:
                expected = verify_inclusion(leaf_, index_, size_, path, root)
                assert expected or (leaf_, index_, size_) != (leaves[index], index, size)
                cases.append(
                    [leaf_.hex(), index_, size_, [h.hex() for h in path], root.hex(), expected]
                )
    results = await page.evaluate(
        """async cases => {
            const v = window.whistleVerify, h = s => v.fromHex(s, 32, "hash");
            const out = [];
            for (const [leaf, index, size, path, root] of cases) {
                out.push(await v.verifyInclusion(h(leaf), index, size, path.map(h), h(root)));
            }
            return out;
        }""",
        cases,
    )
    wrong = [case[1:3] for case, got in zip(cases, results, strict=True) if got != case[5]]
    assert not wrong and len(cases) == 5 * 820


async def test_a_tips_words_show_until_it_is_erased_and_then_read_erased_still_verified(
    page: Page, served: Served, token: TokenFactory
) -> None:
    """The words are sealed in the verified bytes; the page shows what the ledger opened them
    to, and 已按规定删除 once the tip's key was destroyed — every entry still 已验证."""
    now = datetime.now(UTC)
    case_id, tip_id = uuid4(), uuid4()
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no="QX20261121-424242",
        channel="web",
        text="幸福路8号门口有人占道摆摊",
        address="幸福路8号",
        received_at=now,
    )
    triage = CaseTriageRequired(
        case_id=case_id, tip_id=tip_id, queue="county", reason="无法定位", catalogue_version="v1"
    )
    await record(
        served.runtime,
        [
            (TIPS, new_event("whistle/intake", str(tip_id), tip, now)),
            (CASES_TOPIC, new_event("whistle/dispatch", str(case_id), triage, now)),
        ],
    )
    await sign_head(served, token)
    await look_up(page, served, case_id, token("auditor"))
    shown = await page.inner_text("#trail tbody")
    assert "内容：幸福路8号门口有人占道摆摊" in shown and "地址：幸福路8号" in shown
    assert await page.locator("#trail tbody .mark").all_inner_texts() == ["已验证"] * 2

    erased = PersonalDataErased(
        tip_id=tip_id,
        tracking_no=tip.tracking_no,
        reason="request",
        legal_basis="本人要求删除",
        erased_at=now,
        erased_by="S0001",
    )
    await record(served.runtime, [(TIPS, new_event("whistle/intake", str(tip_id), erased, now))])
    await sign_head(served, token)
    await look_up(page, served, case_id, token("auditor"))
    shown = await page.inner_text("#trail tbody")
    assert "幸福路" not in shown
    assert "内容：已按规定删除" in shown and "删除个人信息" in shown
    assert await page.locator("#trail tbody .mark").all_inner_texts() == ["已验证"] * 3
