"""Intake while PostgreSQL is unavailable: stopped, frozen, out of disk.

Every channel answers 503 with ``Retry-After`` (problem+json; Open311 its own error document)
and WeChat a passive reply asking the follower to send again: never a 500, never a hang, never
201 for a tip that was not committed. Once PostgreSQL is back, the same request is taken, once.
The module runs on a PostgreSQL server of its own, which it stops, freezes and fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import asyncpg
import httpx
import pytest
from defusedxml import ElementTree
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from services.intake.app import create_app
from services.intake.models import Tip
from services.intake.wechat_messages import BUSY as WECHAT_BUSY
from services.launcher.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.runtime.problems import BUSY, DEPENDENCY_UNAVAILABLE
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.files import png
from tests.support.infra import Infra, prepared_on

PROBLEM = "application/problem+json"
OPEN311_KEY = "whistle-open311-dev-key"
ACCOUNT = "gh_whistle_county"
RETRY_AFTER = 7
# Far beyond what intake may take to answer, well within pytest's own timeout.
FROZEN_AT_MOST = 60

Send = Callable[[], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Intake:
    postgres: EmbeddedPostgres
    client: httpx.AsyncClient
    runtime: Runtime
    app: FastAPI


@pytest.fixture(scope="module")
def own_servers(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EmbeddedPostgres, Infra]]:
    """A PostgreSQL server (kept at hand, to be stopped and frozen) and a broker of the
    module's own: the session's servers serve every other test meanwhile."""
    root = tmp_path_factory.mktemp("outage-servers")
    postgres = EmbeddedPostgres(root / "postgres" / "data", free_port())
    broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
    postgres.start()
    try:
        broker.start()
        try:
            yield postgres, Infra(postgres.url, broker.bootstrap, root)
        finally:
            broker.stop()
    finally:
        postgres.stop()


@pytest.fixture(scope="module")
async def intake(
    own_servers: tuple[EmbeddedPostgres, Infra], settings: Settings
) -> AsyncIterator[Intake]:
    postgres, servers = own_servers
    own = await prepared_on(
        servers, settings, ("intake",), dependency_retry_after_seconds=RETRY_AFTER
    )
    app = create_app(own)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Intake(postgres, client, app.state.runtime, app)


@asynccontextmanager
async def stopped(postgres: EmbeddedPostgres) -> AsyncIterator[None]:
    await asyncio.to_thread(postgres.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(postgres.start)


def _children(pid: int) -> list[int]:
    listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in listed.split()]


@asynccontextmanager
async def frozen(postgres: EmbeddedPostgres) -> AsyncIterator[None]:
    """PostgreSQL stopped dead (SIGSTOP): connections open, nothing answered. Each backend
    is a session of its own (PostgreSQL calls setsid), so the process group does not reach
    them; the postmaster is stopped first, so it forks none while they are being stopped.
    A block that hangs fails here, in time to thaw the server for the tests that follow."""
    assert postgres.process is not None
    postmaster = postgres.process.pid
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    try:
        for child in _children(postmaster):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGSTOP)
                stopped.append(child)
        async with asyncio.timeout(FROZEN_AT_MOST):
            yield
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@asynccontextmanager
async def superuser(runtime: Runtime) -> AsyncIterator[asyncpg.Connection]:
    url = make_url(runtime.settings.database_url_for("intake"))
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def failing_inserts(runtime: Runtime, errcode: str, message: str) -> AsyncIterator[None]:
    """Every insert into ``tip`` fails as PostgreSQL fails it with ``errcode``: the real server
    answers, through the real driver, exactly as it would."""
    async with superuser(runtime) as conn:
        await conn.execute(
            f"""
            CREATE FUNCTION outage_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION '{message}' USING ERRCODE = '{errcode}'; END $$;
            CREATE TRIGGER outage_test_refuse BEFORE INSERT ON tip
                FOR EACH ROW EXECUTE FUNCTION outage_test_refuse();
            """
        )
        try:
            yield
        finally:
            await conn.execute(
                "DROP TRIGGER outage_test_refuse ON tip; DROP FUNCTION outage_test_refuse();"
            )


async def _tips_saying(runtime: Runtime, marker: str) -> int:
    async with runtime.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(Tip).where(Tip.text.contains(marker))  # type: ignore[attr-defined]
        )
    return int(count or 0)


def _problem_503(answer: httpx.Response) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["content-type"] == PROBLEM
    assert answer.headers["retry-after"] == str(RETRY_AFTER)
    problem = answer.json()
    assert (problem["type"], problem["status"], problem["detail"]) == (
        DEPENDENCY_UNAVAILABLE,
        503,
        BUSY,
    )


def _open311_503(answer: httpx.Response, fmt: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == str(RETRY_AFTER)
    if fmt == "xml":
        assert answer.headers["content-type"].startswith("text/xml")
        root = ElementTree.fromstring(answer.content)
        assert root.tag == "errors"
        (error,) = root.findall("error")
        assert (error.findtext("code"), error.findtext("description")) == ("503", BUSY)
    else:
        assert answer.headers["content-type"].startswith("application/json")
        assert answer.json() == [{"code": 503, "description": BUSY}]


def _wechat_reply(answer: httpx.Response, openid: str) -> str:
    """The text of a passive reply WeChat accepts: 200, XML, to the follower, from the
    account."""
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "xml"
    assert root.findtext("ToUserName") == openid
    assert root.findtext("FromUserName") == ACCOUNT
    assert root.findtext("MsgType") == "text"
    assert int(root.findtext("CreateTime") or "0") > 0
    return str(root.findtext("Content"))


@dataclass(frozen=True)
class Channels:
    """One request per channel that stores a tip, each saying its own ``marker`` and sent
    again as it was (same Idempotency-Key, call id, MsgId), as a client retries."""

    client: httpx.AsyncClient
    token: TokenFactory
    marker: str

    @property
    def openid(self) -> str:
        return f"oOutage{self.marker}"

    async def web(self) -> httpx.Response:
        body = {"text": f"路口井盖丢失 {self.marker}", "grid_id": "T01V01G01"}
        headers = {"Idempotency-Key": f"web-{self.marker}"}
        return await self.client.post("/v1/tips", json=body, headers=headers)

    async def hotline(self) -> httpx.Response:
        body = {
            "call_id": f"CALL-{self.marker}",
            "caller_number": "13912345678",
            "summary": f"来电反映小区停水 {self.marker}",
            "address": "城关镇迎宾社区",
        }
        headers = {"authorization": f"Bearer {self.token('hotline_operator')}"}
        return await self.client.post("/v1/hotline/tickets", json=body, headers=headers)

    async def grid(self) -> httpx.Response:
        body = {"grid_id": "T01V01G01", "text": f"楼道堆放杂物 {self.marker}"}
        headers = {
            "authorization": f"Bearer {self.token('grid_worker', 'grid:T01V01G01')}",
            "Idempotency-Key": f"grid-{self.marker}",
        }
        return await self.client.post("/v1/grid/reports", json=body, headers=headers)

    async def open311(self, fmt: str) -> httpx.Response:
        form = {
            "api_key": OPEN311_KEY,
            "service_code": "road-obstruction",
            "lat": "38.75",
            "long": "113.25",
            "description": f"公路上有人晒玉米 {self.marker} {fmt}",
        }
        headers = {"Idempotency-Key": f"open311-{fmt}-{self.marker}"}
        return await self.client.post(f"/open311/v2/requests.{fmt}", data=form, headers=headers)

    async def wechat(self) -> httpx.Response:
        timestamp, nonce = str(int(time.time())), uuid4().hex[:10]
        token = "whistle-dev-wechat-token"  # the settings' development default
        signature = hashlib.sha1("".join(sorted((token, timestamp, nonce))).encode()).hexdigest()
        msg_id = str(int(hashlib.sha256(self.marker.encode()).hexdigest()[:15], 16))
        body = (
            f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
            f"<FromUserName><![CDATA[{self.openid}]]></FromUserName>"
            f"<CreateTime>1763700000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[村口路灯不亮 {self.marker}]]></Content>"
            f"<MsgId>{msg_id}</MsgId></xml>"
        )
        params = {"signature": signature, "timestamp": timestamp, "nonce": nonce}
        return await self.client.post("/wechat/callback", params=params, content=body)

    def tips(self) -> dict[str, Send]:
        """The requests that store a tip, by channel, as problem+json channels."""
        return {"web": self.web, "hotline": self.hotline, "grid": self.grid}


async def _accepted_once(intake: Intake, channels: Channels) -> None:
    """Sent again once PostgreSQL is back, every request is taken (201; WeChat's reply with
    the tracking number), a retry gets the original answer, and one tip exists per request."""
    for name, send in channels.tips().items():
        first, again = await send(), await send()
        assert (first.status_code, again.status_code) == (201, 200), (name, first.text)
        assert again.json()["tracking_no"] == first.json()["tracking_no"]
    for fmt in ("json", "xml"):
        first, again = await channels.open311(fmt), await channels.open311(fmt)
        assert (first.status_code, again.status_code) == (201, 200), (fmt, first.text)
    first_reply = _wechat_reply(await channels.wechat(), channels.openid)
    assert first_reply.startswith("您的诉求已受理，受理编号")
    assert _wechat_reply(await channels.wechat(), channels.openid) == first_reply
    # Web, hotline, grid, Open311 twice (JSON and XML), WeChat: one tip each.
    assert await _tips_saying(intake.runtime, channels.marker) == 6


async def test_every_channel_answers_503_while_postgresql_is_down_then_takes_the_request_once(
    intake: Intake, token: TokenFactory
) -> None:
    client = intake.client
    channels = Channels(client, token, uuid4().hex[:10])
    earlier = (await client.post("/v1/tips", json={"text": "占道", "grid_id": "T01V01G01"})).json()
    status_url = f"/v1/tips/{earlier['tracking_no']}"
    code = earlier["access_code"]

    async with stopped(intake.postgres):
        for name, send in channels.tips().items():
            answer = await send()
            assert answer.status_code == 503, name
            _problem_503(answer)
        for fmt in ("json", "xml"):
            _open311_503(await channels.open311(fmt), fmt)
        _open311_503(await client.get("/open311/v2/requests.json"), "json")
        assert _wechat_reply(await channels.wechat(), channels.openid) == WECHAT_BUSY
        _problem_503(await client.get(status_url, headers={"Access-Code": code}))
        _problem_503(
            await client.post(f"{status_url}/feedback", json={"code": code, "rating": "satisfied"})
        )
        _problem_503(
            await client.post("/v1/attachments", files={"file": ("p.png", png(7), "image/png")})
        )

    await _accepted_once(intake, channels)
    assert (await client.get(status_url, headers={"Access-Code": code})).status_code == 200


async def test_a_frozen_postgresql_gets_a_503_within_seconds_and_nothing_half_saved(
    intake: Intake, token: TokenFactory
) -> None:
    channels = Channels(intake.client, token, uuid4().hex[:10])
    async with frozen(intake.postgres):
        started = time.monotonic()
        answer = await channels.web()
        web_took = time.monotonic() - started
        started = time.monotonic()
        reply = _wechat_reply(await channels.wechat(), channels.openid)
        wechat_took = time.monotonic() - started
    _problem_503(answer)
    assert web_took < 15, f"the web tip waited {web_took:.1f}s"
    # WeChat drops a reply that takes more than five seconds.
    assert reply == WECHAT_BUSY and wechat_took < 5, f"WeChat waited {wechat_took:.1f}s"
    assert await _tips_saying(intake.runtime, channels.marker) == 0

    await _accepted_once(intake, channels)


async def test_intakes_connections_time_out_by_themselves(
    intake: Intake, token: TokenFactory
) -> None:
    """Without the deadline of a request, a connection and a statement still give up on a
    frozen server, as intake's outbox relay and consumer need them to."""
    patient = intake.runtime.settings.model_copy(
        update={
            "intake_database_deadline_seconds": 600,
            "intake_database_connect_timeout_seconds": 1,
            "intake_database_statement_timeout_seconds": 1,
            "kafka_group_prefix": f"patient-{uuid4().hex[:6]}",
        }
    )
    app = create_app(patient)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            channels = Channels(client, token, uuid4().hex[:10])
            assert (
                await client.get("/v1/tips/QX0-0", headers={"Access-Code": "0"})
            ).status_code == 404
            async with frozen(intake.postgres):
                started = time.monotonic()
                answer = await channels.web()
                took = time.monotonic() - started
    _problem_503(answer)
    assert took < 15, f"the web tip waited {took:.1f}s"


async def test_a_full_disk_answers_503_and_the_request_is_taken_once_there_is_room(
    intake: Intake, token: TokenFactory
) -> None:
    channels = Channels(intake.client, token, uuid4().hex[:10])
    # What PostgreSQL says when the file a row goes into cannot grow (SQLSTATE 53100).
    full = 'could not extend file "base/16384/16385": No space left on device'
    async with failing_inserts(intake.runtime, "disk_full", full):
        for name, send in channels.tips().items():
            answer = await send()
            assert answer.status_code == 503, name
            _problem_503(answer)
        for fmt in ("json", "xml"):
            _open311_503(await channels.open311(fmt), fmt)
        assert _wechat_reply(await channels.wechat(), channels.openid) == WECHAT_BUSY
    assert await _tips_saying(intake.runtime, channels.marker) == 0

    await _accepted_once(intake, channels)


async def test_a_database_error_that_is_no_outage_is_still_a_server_error(
    intake: Intake, token: TokenFactory
) -> None:
    """Only an unavailable dependency is a 503: a statement PostgreSQL refuses for what it
    says is the code's fault, not the server's state, and must not be retried blindly."""
    transport = httpx.ASGITransport(app=intake.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        channels = Channels(client, token, uuid4().hex[:10])
        async with failing_inserts(intake.runtime, "P0001", "a bug"):
            assert (await channels.web()).status_code == 500
            assert (await channels.open311("json")).status_code == 500
