"""The WeChat official account's callback through real HTTP, PostgreSQL and the broker.

Signatures and ciphertexts sent here are computed in this file with hashlib and the raw AES
primitive, independently of services/intake/wechat_crypto.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import func, select
from sqlalchemy import text as text_sql

from contracts.topics import TIPS
from services.dispatch.models import Case
from services.intake.app import create_app
from services.intake.models import Tip, WeChatMessage
from services.intake.wechat_crypto import encrypt
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock
from tests.support.infra import eventually

PROBLEM = "application/problem+json"
ACCOUNT = "gh_whistle_county"


class WeChat:
    """What WeChat's servers do: sign (and in safe mode seal) each callback."""

    def __init__(self, client: httpx.AsyncClient, runtime: Runtime, clock: MovableClock) -> None:
        self.client, self.runtime, self.clock = client, runtime, clock
        settings = runtime.settings
        self.token, self.app_id = settings.wechat_token, settings.wechat_app_id
        self.key = base64.b64decode(settings.wechat_encoding_aes_key + "=")

    def sign(self, *parts: str) -> str:
        return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()

    def query(self) -> dict[str, str]:
        """A signed query at intake's own (injected) time, with a fresh nonce."""
        timestamp = str(int(self.clock().timestamp()))
        nonce = str(int.from_bytes(os.urandom(4), "big"))
        return {
            "timestamp": timestamp,
            "nonce": nonce,
            "signature": self.sign(self.token, timestamp, nonce),
        }

    async def post(self, body: str | bytes, **params: str) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        query = {**self.query(), **params}
        return await self.client.post("/wechat/callback", params=query, content=content)

    async def post_as_sent(self, body: str, query: dict[str, str]) -> httpx.Response:
        """One request exactly as it was sent before: the same signed query and body."""
        return await self.client.post("/wechat/callback", params=query, content=body.encode())

    def seal(self, message: bytes, app_id: str | None = None) -> str:
        framed = os.urandom(16) + struct.pack(">I", len(message)) + message
        framed += (app_id or self.app_id).encode()
        pad = 32 - len(framed) % 32
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        sealed = encryptor.update(framed + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(sealed).decode()

    def open(self, encrypted: str) -> tuple[bytes, bytes]:
        """The message and the AppId inside an encrypted reply."""
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        framed = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
        framed = framed[: -framed[-1]]
        (length,) = struct.unpack(">I", framed[16:20])
        return framed[20 : 20 + length], framed[20 + length :]

    async def post_sealed(
        self, encrypted: str, *, msg_signature: str | None = None
    ) -> httpx.Response:
        query = self.query()
        envelope = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{encrypted}</Encrypt></xml>"
        signed = msg_signature or self.sign(
            self.token, query["timestamp"], query["nonce"], encrypted
        )
        params = {**query, "encrypt_type": "aes", "msg_signature": signed, "openid": "o"}
        return await self.client.post("/wechat/callback", params=params, content=envelope)


def message(openid: str, kind: str, body: str, msg_id: str | None = None) -> str:
    msg_id = msg_id or new_msg_id()
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>1763700000</CreateTime>"
        f"<MsgType><![CDATA[{kind}]]></MsgType>{body}<MsgId>{msg_id}</MsgId></xml>"
    )


def text(openid: str, content: str, msg_id: str | None = None) -> str:
    return message(openid, "text", f"<Content><![CDATA[{content}]]></Content>", msg_id)


def image(openid: str, media_id: str, msg_id: str | None = None) -> str:
    body = f"<PicUrl>http://mmbiz.qpic.cn/{media_id}.jpg</PicUrl><MediaId>{media_id}</MediaId>"
    return message(openid, "image", body, msg_id)


def new_msg_id() -> str:
    return str(int.from_bytes(os.urandom(7), "big"))


def new_openid() -> str:
    return "oWhistle" + uuid4().hex[:20]


def content_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return ET.fromstring(response.text).findtext("Content") or ""


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[WeChat]:
    """Intake on a clock the tests move, to step past the supplement window and the
    callback's timestamp window."""
    clock = MovableClock(datetime.now(UTC))
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield WeChat(client, app.state.runtime, clock)


@pytest.fixture(scope="module")
async def wechat(migrated: Settings) -> AsyncIterator[WeChat]:
    async with served(migrated) as serving:
        yield serving


@pytest.fixture(scope="module")
async def safe_only(migrated: Settings) -> AsyncIterator[WeChat]:
    """Intake for an account in safe mode: every callback must come encrypted."""
    async with served(migrated.model_copy(update={"wechat_safe_mode": True})) as serving:
        yield serving


async def tip_of(runtime: Runtime, msg_id: str) -> Tip:
    async with runtime.sessions() as session:
        tip = await session.scalar(
            select(Tip).where(Tip.channel == "wechat", Tip.dedupe_key == msg_id)
        )
    assert tip is not None
    return tip


async def staged(runtime: Runtime, tip: Tip, event_type: str) -> list[dict]:
    async with runtime.sessions() as session:
        events = (
            await session.scalars(
                select(OutboxMessage.event).where(OutboxMessage.key == str(tip.id))
            )
        ).all()
    return [e for e in events if e["type"] == event_type]


async def remembered_nonces(runtime: Runtime, signed_by: datetime) -> int:
    """How many nonces intake still remembers of callbacks signed at or before ``signed_by``."""
    query = text_sql("SELECT count(*) FROM wechat_nonce WHERE signed_at <= :t")
    async with runtime.sessions() as session:
        found = await session.scalar(query, {"t": int(signed_by.timestamp())})
    return int(found or 0)


async def stored_anything(runtime: Runtime, msg_id: str) -> bool:
    async with runtime.sessions() as session:
        messages = await session.scalar(
            select(func.count()).where(WeChatMessage.msg_id == msg_id)  # type: ignore[arg-type]
        )
        tips = await session.scalar(select(func.count()).where(Tip.dedupe_key == msg_id))
    return bool(messages or tips)


async def published(bootstrap: str, subject: str, event_type: str, within: float = 20) -> dict:
    """The first event of ``event_type`` about ``subject`` on the tips topic."""
    consumer = AIOKafkaConsumer(
        TIPS, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = json.loads(record.value)
                    if record.key == subject.encode() and event["type"] == event_type:
                        return dict(event)
    finally:
        await consumer.stop()
    raise AssertionError(f"no {event_type} about {subject} on {TIPS} within {within}s")


# ---------------------------------------------------------------- server verification


async def test_server_verification_echoes_only_when_signed(wechat: WeChat) -> None:
    query = {**wechat.query(), "echostr": "5837397749133574401"}
    ok = await wechat.client.get("/wechat/callback", params=query)
    assert (ok.status_code, ok.text) == (200, "5837397749133574401")
    forged = {**query, "signature": wechat.sign("not-the-token", query["timestamp"], "1")}
    refused = await wechat.client.get("/wechat/callback", params=forged)
    assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    assert "5837397749133574401" not in refused.text


async def test_an_unsigned_message_is_refused_and_nothing_stored(wechat: WeChat) -> None:
    msg_id = new_msg_id()
    body = text(new_openid(), "有人在河道里倒垃圾", msg_id)
    forged = {"signature": "0" * 40}
    assert (await wechat.post(body, **forged)).status_code == 403
    assert not await stored_anything(wechat.runtime, msg_id)


async def test_a_timestamp_outside_the_window_is_refused_and_nothing_stored(
    wechat: WeChat,
) -> None:
    window = timedelta(seconds=wechat.runtime.settings.wechat_timestamp_window_seconds)
    wechat.clock.now = wechat.clock.now.replace(microsecond=0)  # WeChat signs whole seconds
    early, early_id = wechat.query(), new_msg_id()
    wechat.clock.advance(window + timedelta(seconds=1))
    late = await wechat.post_as_sent(text(new_openid(), "有人在河道里倒垃圾", early_id), early)
    assert late.status_code == 403 and late.headers["content-type"] == PROBLEM
    ahead, ahead_id = wechat.query(), new_msg_id()
    wechat.clock.advance(-(window + timedelta(seconds=1)))
    future = await wechat.post_as_sent(text(new_openid(), "有人在河道里倒垃圾", ahead_id), ahead)
    assert future.status_code == 403
    assert not await stored_anything(wechat.runtime, early_id)
    assert not await stored_anything(wechat.runtime, ahead_id)
    # At the window's edge the callback is still WeChat's.
    edge, edge_id = wechat.query(), new_msg_id()
    wechat.clock.advance(window)
    on_time = await wechat.post_as_sent(text(new_openid(), "有人在河道里倒垃圾", edge_id), edge)
    assert on_time.status_code == 200 and await stored_anything(wechat.runtime, edge_id)


async def test_a_signed_request_replayed_is_refused_even_concurrently(wechat: WeChat) -> None:
    openid = new_openid()
    query, body = wechat.query(), text(openid, "小区门口的井盖丢了", new_msg_id())
    first = await wechat.post_as_sent(body, query)
    assert "受理编号" in content_of(first)
    replayed = await wechat.post_as_sent(body, query)
    assert replayed.status_code == 403 and replayed.headers["content-type"] == PROBLEM
    assert "受理编号" not in replayed.text
    # Two replicas (here: two connections) racing the same new request: one takes it.
    query, body = wechat.query(), text(openid, "路口的红绿灯不亮了", new_msg_id())
    raced = await asyncio.gather(*(wechat.post_as_sent(body, query) for _ in range(4)))
    assert sorted(r.status_code for r in raced) == [200, 403, 403, 403]


async def test_nonces_are_forgotten_once_their_timestamp_is_out_of_the_window(
    wechat: WeChat,
) -> None:
    window = timedelta(seconds=wechat.runtime.settings.wechat_timestamp_window_seconds)
    start = wechat.clock()
    await wechat.post(text(new_openid(), "桥下有人钓鱼，很危险"))
    assert await remembered_nonces(wechat.runtime, signed_by=start) >= 1
    wechat.clock.advance(window + timedelta(seconds=1))
    await wechat.post(text(new_openid(), "桥下有人钓鱼，很危险"))
    assert await remembered_nonces(wechat.runtime, signed_by=start) == 0


# ---------------------------------------------------------------- plaintext mode


async def test_a_text_opens_a_tip_and_the_reply_carries_its_numbers(
    wechat: WeChat, migrated: Settings
) -> None:
    openid, msg_id = new_openid(), new_msg_id()
    response = await wechat.post(text(openid, "村口路灯坏了一个星期，晚上很黑", msg_id))
    reply = ET.fromstring(response.text)
    assert (reply.findtext("ToUserName"), reply.findtext("FromUserName")) == (openid, ACCOUNT)
    content = content_of(response)
    tip = await tip_of(wechat.runtime, msg_id)
    assert f"受理编号 {tip.tracking_no}" in content and "请妥善保存" in content
    code = content.split("查询码 ")[1][:6]
    # The access code in the reply is the one that opens the tip's status.
    status = await wechat.client.get(f"/v1/tips/{tip.tracking_no}", headers={"Access-Code": code})
    assert status.status_code == 200 and status.json()["status_text"] == "已受理"

    assert (tip.channel, tip.external_ref, tip.text) == (
        "wechat",
        msg_id,
        "村口路灯坏了一个星期，晚上很黑",
    )
    assert tip.contact_sealed is None and tip.phone_hash is None
    event = await published(migrated.require_kafka(), str(tip.id), "whistle.tip.received")
    assert event["data"]["channel"] == "wechat" and event["data"]["external_ref"] == msg_id
    assert event["data"]["location"] is None  # dispatch's county triage queue places it
    assert openid not in json.dumps(event, ensure_ascii=False)
    async with wechat.runtime.sessions() as session:
        row = await session.get(WeChatMessage, msg_id)
    assert row is not None and row.tip_id == tip.id
    assert openid not in row.openid_hash and len(row.openid_hash) == 64


async def test_a_wechat_tip_without_a_place_waits_in_the_county_triage_queue(
    wechat: WeChat, dispatch: tuple[httpx.AsyncClient, Runtime]
) -> None:
    msg_id = new_msg_id()
    await wechat.post(text(new_openid(), "有人往河里排污水，水都变黑了", msg_id))
    tip = await tip_of(wechat.runtime, msg_id)
    _, dispatch_runtime = dispatch

    async def opened() -> Case | None:
        async with dispatch_runtime.sessions() as session:
            return await session.scalar(select(Case).where(Case.tip_id == tip.id))

    case = await eventually(opened, what="dispatch opening a case for the WeChat tip")
    assert (case.status, case.queue, case.township_code) == ("triage", "county", None)


async def test_a_transcribed_voice_message_opens_a_tip(wechat: WeChat) -> None:
    msg_id = new_msg_id()
    body = (
        "<MediaId>V1</MediaId><Format>amr</Format><Recognition>小区门口有人占道经营</Recognition>"
    )
    content = content_of(await wechat.post(message(new_openid(), "voice", body, msg_id)))
    tip = await tip_of(wechat.runtime, msg_id)
    assert tip.text == "小区门口有人占道经营" and tip.tracking_no in content


async def test_wechat_retries_of_one_msg_id_get_the_same_reply_and_make_one_tip(
    wechat: WeChat,
) -> None:
    openid, msg_id = new_openid(), new_msg_id()
    body = text(openid, "工地夜间施工噪音扰民", msg_id)
    first = content_of(await wechat.post(body))
    # WeChat retries after five seconds without an answer; a slow first answer races them.
    retries = await asyncio.gather(*(wechat.post(body) for _ in range(3)))
    assert {content_of(r) for r in retries} == {first}
    tip = await tip_of(wechat.runtime, msg_id)
    assert len(await staged(wechat.runtime, tip, "whistle.tip.received")) == 1
    async with wechat.runtime.sessions() as session:
        count = await session.scalar(select(func.count()).where(Tip.dedupe_key == msg_id))
    assert count == 1


async def test_events_and_other_kinds_get_wechat_answers_and_store_nothing(
    wechat: WeChat,
) -> None:
    openid = new_openid()
    subscribe = (
        message(openid, "event", "<Event>subscribe</Event>")
        .replace("<MsgId>", "<Ignored>")
        .replace("</MsgId>", "</Ignored>")
    )
    assert "请直接发送文字" in content_of(await wechat.post(subscribe))
    leave = subscribe.replace("subscribe", "unsubscribe")
    answer = await wechat.post(leave)
    assert (answer.status_code, answer.text) == (200, "success")
    msg_id = new_msg_id()
    video = message(openid, "video", "<MediaId>X</MediaId><ThumbMediaId>T</ThumbMediaId>", msg_id)
    assert "暂不支持" in content_of(await wechat.post(video))
    assert not await stored_anything(wechat.runtime, msg_id)


async def test_a_msg_id_sent_again_by_another_follower_gets_nothing_of_the_tip(
    wechat: WeChat,
) -> None:
    msg_id = new_msg_id()
    first = content_of(await wechat.post(text(new_openid(), "菜市场门口污水横流", msg_id)))
    tip = await tip_of(wechat.runtime, msg_id)
    code = first.split("查询码 ")[1][:6]
    other = await wechat.post(text(new_openid(), "菜市场门口污水横流", msg_id))
    assert other.status_code == 403 and other.headers["content-type"] == PROBLEM
    assert tip.tracking_no not in other.text and code not in other.text
    async with wechat.runtime.sessions() as session:
        count = await session.scalar(select(func.count()).where(Tip.dedupe_key == msg_id))
    assert count == 1


# ---------------------------------------------------------------- supplements


async def test_a_photo_and_a_location_within_the_window_supplement_the_tip(
    wechat: WeChat, migrated: Settings
) -> None:
    openid, msg_id = new_openid(), new_msg_id()
    await wechat.post(text(openid, "路边有人焚烧秸秆，烟很大", msg_id))
    tip = await tip_of(wechat.runtime, msg_id)

    wechat.clock.advance(timedelta(minutes=10))
    photo_id = new_msg_id()
    photo = image(openid, "MEDIA-photo-1", photo_id)
    answer = content_of(await wechat.post(photo))
    assert "照片" in answer and tip.tracking_no in answer
    assert content_of(await wechat.post(photo)) == answer  # WeChat's retry: no second event

    wechat.clock.advance(timedelta(minutes=19))
    place = message(
        openid,
        "location",
        "<Location_X>34.581</Location_X><Location_Y>105.724</Location_Y><Scale>16</Scale>"
        "<Label><![CDATA[城关镇五里铺村村口]]></Label>",
    )
    assert "位置" in content_of(await wechat.post(place))

    supplements = await staged(wechat.runtime, tip, "whistle.tip.supplemented")
    assert len(supplements) == 2
    event = await published(migrated.require_kafka(), str(tip.id), "whistle.tip.supplemented")
    assert event["subject"] == str(tip.id)
    photo_event = next(e for e in supplements if e["data"]["external_ref"] == photo_id)
    assert photo_event["data"]["attachments"] == ["MEDIA-photo-1"]
    assert photo_event["data"]["channel"] == "wechat"
    place_event = next(e for e in supplements if e["data"]["location"] is not None)
    assert place_event["data"]["location"] == {"lat": 34.581, "lon": 105.724}
    assert place_event["data"]["address"] == "城关镇五里铺村村口"
    for event in supplements:
        assert openid not in json.dumps(event, ensure_ascii=False)
    async with wechat.runtime.sessions() as session:
        row = await session.get(WeChatMessage, photo_id)
    assert row is not None and row.tip_id == tip.id and row.media_id == "MEDIA-photo-1"
    assert row.pic_url == "http://mmbiz.qpic.cn/MEDIA-photo-1.jpg"


async def test_a_photo_after_the_window_or_without_a_tip_asks_for_a_description(
    wechat: WeChat,
) -> None:
    openid, msg_id = new_openid(), new_msg_id()
    await wechat.post(text(openid, "垃圾桶满了没人清", msg_id))
    tip = await tip_of(wechat.runtime, msg_id)
    wechat.clock.advance(timedelta(minutes=31))
    late = content_of(await wechat.post(image(openid, "MEDIA-late")))
    assert "请先用文字描述" in late
    assert await staged(wechat.runtime, tip, "whistle.tip.supplemented") == []

    stranger = content_of(await wechat.post(image(new_openid(), "MEDIA-stranger")))
    assert stranger == late


# ---------------------------------------------------------------- safe mode


async def test_safe_mode_round_trip(wechat: WeChat) -> None:
    openid, msg_id = new_openid(), new_msg_id()
    inner = text(openid, "桥上的护栏断了，很危险", msg_id).encode()
    response = await wechat.post_sealed(wechat.seal(inner))
    assert response.status_code == 200, response.text
    envelope = ET.fromstring(response.text)
    encrypted = envelope.findtext("Encrypt") or ""
    timestamp, nonce = envelope.findtext("TimeStamp") or "", envelope.findtext("Nonce") or ""
    assert envelope.findtext("MsgSignature") == wechat.sign(
        wechat.token, timestamp, nonce, encrypted
    )
    plain, app_id = wechat.open(encrypted)
    assert app_id == wechat.app_id.encode()
    reply = ET.fromstring(plain)
    tip = await tip_of(wechat.runtime, msg_id)
    assert reply.findtext("ToUserName") == openid
    assert f"受理编号 {tip.tracking_no}" in (reply.findtext("Content") or "")

    # A message sealed by Whistle's own functions is read the same way.
    again = encrypt(inner, wechat.key, wechat.app_id, os.urandom(16))
    retried = await wechat.post_sealed(again)
    second, _ = wechat.open(ET.fromstring(retried.text).findtext("Encrypt") or "")
    assert ET.fromstring(second).findtext("Content") == reply.findtext("Content")


async def test_safe_mode_refuses_a_bad_msg_signature_or_another_account(wechat: WeChat) -> None:
    msg_id = new_msg_id()
    sealed = wechat.seal(text(new_openid(), "有人私挖乱采", msg_id).encode())
    forged = await wechat.post_sealed(sealed, msg_signature=wechat.sign("x", "1", "2", sealed))
    assert forged.status_code == 403 and forged.headers["content-type"] == PROBLEM
    other = wechat.seal(text(new_openid(), "有人私挖乱采", msg_id).encode(), "wx_other_account")
    assert (await wechat.post_sealed(other)).status_code == 400
    assert not await stored_anything(wechat.runtime, msg_id)


async def test_an_account_in_safe_mode_refuses_plaintext_callbacks(safe_only: WeChat) -> None:
    msg_id = new_msg_id()
    plain = text(new_openid(), "有人私挖乱采", msg_id)
    for downgrade in ({}, {"encrypt_type": "raw"}):
        refused = await safe_only.post(plain, **downgrade)
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM
    # encrypt_type=aes: a plaintext body (no Encrypt), or no msg_signature, is refused too.
    aes = {"encrypt_type": "aes"}
    assert (await safe_only.post(plain, **aes)).status_code in (400, 403)
    sealed = safe_only.seal(plain.encode())
    envelope = f"<xml><ToUserName>{ACCOUNT}</ToUserName><Encrypt>{sealed}</Encrypt></xml>"
    assert (await safe_only.post(envelope, **aes)).status_code == 403
    assert not await stored_anything(safe_only.runtime, msg_id)
    assert (await safe_only.post_sealed(sealed)).status_code == 200
    assert await stored_anything(safe_only.runtime, msg_id)


# ---------------------------------------------------------------- hostile input


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE xml [
 <!ENTITY a "aaaaaaaaaa">
 <!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
 <!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">
 <!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">
 <!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;">
 <!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">
]>
<xml><ToUserName>gh</ToUserName><FromUserName>oBomb</FromUserName><MsgType>text</MsgType>
<Content>&f;</Content><MsgId>{msg_id}</MsgId></xml>"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY leak SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>oLeak</FromUserName><MsgType>text</MsgType>
<Content>&leak;</Content><MsgId>{msg_id}</MsgId></xml>"""


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, XXE], ids=["billion-laughs", "xxe"])
async def test_xml_bombs_and_external_entities_are_refused(wechat: WeChat, payload: str) -> None:
    msg_id = new_msg_id()
    document = payload.format(msg_id=msg_id)
    response = await wechat.post(document)
    assert response.status_code == 400 and response.headers["content-type"] == PROBLEM
    assert "root:" not in response.text
    sealed = await wechat.post_sealed(wechat.seal(document.encode()))
    assert sealed.status_code == 400
    assert not await stored_anything(wechat.runtime, msg_id)


async def test_an_oversized_body_is_refused_with_413(wechat: WeChat) -> None:
    msg_id = new_msg_id()
    huge = text(new_openid(), "长" * 30_000, msg_id)
    response = await wechat.post(huge)
    assert response.status_code == 413 and response.headers["content-type"] == PROBLEM
    assert not await stored_anything(wechat.runtime, msg_id)
