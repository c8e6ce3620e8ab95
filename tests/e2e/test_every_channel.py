"""A tip from each channel a county uses — web, 12345 hotline, grid worker, Open311, WeChat —
becomes a case that the ledger records; and no event on any topic, and no service's log, holds
a citizen's phone number or WeChat identity in plain text."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from contracts.topics import all_topic_names
from reference.county import load_counties
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.infra import read_everything
from tests.support.journey import SubmittedTip, case_of, complete_trail
from tests.support.stack import ServiceProcesses

pytestmark = pytest.mark.e2e

WEB_PHONE, HOTLINE_PHONE, OPEN311_PHONE = "13811112222", "13933334444", "13755556666"
OPENID = "oWhistle-e2e-follower-7"
NUMBERS = re.compile(r"受理编号\s*(\S+?)，查询码\s*(\d+)")

Channel = Callable[[httpx.AsyncClient, Settings, TokenFactory], Awaitable[SubmittedTip]]


async def web(http: httpx.AsyncClient, settings: Settings, _: TokenFactory) -> SubmittedTip:
    body = {
        "text": "村口有人占道摆摊，车都过不去了",
        "grid_id": "T03V02G01",
        "contact": {"name": "张女士", "phone": WEB_PHONE},
    }
    response = await http.post(f"{settings.url_of('intake')}/v1/tips", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return SubmittedTip(data["tip_id"], data["tracking_no"], data["access_code"])


async def hotline(http: httpx.AsyncClient, settings: Settings, token: TokenFactory) -> SubmittedTip:
    body = {
        "call_id": f"e2e-call-{time.time_ns()}",
        "caller_number": HOTLINE_PHONE,
        "caller_name": "李先生",
        "summary": "来电反映集市上有人用鬼秤短斤少两",
        "address": "城关镇十里铺村集市",
        "urgency": "general",
    }
    response = await http.post(
        f"{settings.url_of('intake')}/v1/hotline/tickets",
        json=body,
        headers={"authorization": f"Bearer {token('hotline_operator')}"},
    )
    assert response.status_code == 201, response.text
    data = response.json()
    return SubmittedTip(data["tip_id"], data["tracking_no"], data["access_code"])


async def grid(http: httpx.AsyncClient, settings: Settings, token: TokenFactory) -> SubmittedTip:
    body = {"grid_id": "T03V01G01", "text": "楼道里有人飞线充电，消防通道被堵"}
    response = await http.post(
        f"{settings.url_of('intake')}/v1/grid/reports",
        json=body,
        headers={"authorization": f"Bearer {token('grid_worker', 'grid:T03V01G01')}"},
    )
    assert response.status_code == 201, response.text
    data = response.json()
    return SubmittedTip(data["tip_id"], data["tracking_no"], data["access_code"])


def _numbers(text: str) -> tuple[str, str]:
    found = NUMBERS.search(text)
    assert found, text
    return found.group(1), found.group(2)


async def open311(http: httpx.AsyncClient, settings: Settings, _: TokenFactory) -> SubmittedTip:
    form = {
        "api_key": settings.open311_api_keys[0],
        "service_code": "noise",
        "lat": "38.76",
        "long": "113.225",
        "description": "广场舞音响每晚开到十点以后，吵得孩子睡不着",
        "phone": OPEN311_PHONE,
        "last_name": "王",
    }
    response = await http.post(f"{settings.url_of('intake')}/open311/v2/requests.json", data=form)
    assert response.status_code == 201, response.text
    [answer] = response.json()
    tracking_no, code = _numbers(answer["service_notice"])
    assert answer["service_request_id"] == tracking_no
    return SubmittedTip(tip_id="", tracking_no=tracking_no, access_code=code)  # not shown


async def wechat(http: httpx.AsyncClient, settings: Settings, _: TokenFactory) -> SubmittedTip:
    timestamp, nonce = str(int(time.time())), "e2e-nonce"
    signature = hashlib.sha1(
        "".join(sorted([settings.wechat_token, timestamp, nonce])).encode()
    ).hexdigest()
    message = (
        "<xml><ToUserName>gh_county</ToUserName>"
        f"<FromUserName>{OPENID}</FromUserName><CreateTime>{timestamp}</CreateTime>"
        "<MsgType>text</MsgType><Content>村口路灯坏了一个星期，晚上很黑</Content>"
        f"<MsgId>{time.time_ns()}</MsgId></xml>"
    )
    response = await http.post(
        f"{settings.url_of('intake')}/wechat/callback",
        params={"signature": signature, "timestamp": timestamp, "nonce": nonce},
        content=message.encode(),
        headers={"content-type": "text/xml"},
    )
    assert response.status_code == 200, response.text
    tracking_no, code = _numbers(response.text)
    return SubmittedTip(tip_id="", tracking_no=tracking_no, access_code=code)  # not shown


OPENED = frozenset({"whistle.tip.received", "whistle.case.opened"})
# A WeChat text says nothing of where: its case waits in the county's triage queue.
ROUTED = frozenset({"whistle.case.assigned", "whistle.deadlines.set"})
CHANNELS: dict[str, tuple[Channel, frozenset[str]]] = {
    "web": (web, ROUTED),
    "hotline": (hotline, ROUTED),
    "grid": (grid, ROUTED),
    "open311": (open311, ROUTED),
    "wechat": (wechat, frozenset({"whistle.case.triage_required"})),
}


async def test_a_tip_from_every_channel_is_recorded_and_no_event_or_log_holds_a_number(
    services: ServiceProcesses, http: httpx.AsyncClient, token: TokenFactory, auditor_token: str
) -> None:
    settings = services.settings
    recorded_ids: set[str] = set()
    for name, (submit, expected) in CHANNELS.items():
        tip = await submit(http, settings, token)
        case_id = await case_of(http, settings, tip, within=45)
        trail = await complete_trail(
            http, settings, case_id, auditor_token, within=45, expected=OPENED | expected
        )
        received = next(e for e in trail if e["type"] == "whistle.tip.received")
        assert received["event"]["data"]["tracking_no"] == tip.tracking_no
        assert received["event"]["data"]["channel"] == name
        recorded_ids |= {e["event"]["id"] for e in trail}

    departments = load_counties(settings.config_dir).departments()
    records = await read_everything(settings.require_kafka(), all_topic_names(departments))
    # The scan covers at least every event of the five trails.
    assert recorded_ids <= {json.loads(r.value or b"{}")["id"] for r in records}
    secrets = (WEB_PHONE, HOTLINE_PHONE, OPEN311_PHONE, OPENID)
    for record in records:
        text = (record.value or b"").decode()
        for secret in secrets:
            assert secret not in text, f"{secret} on {record.topic}: {text[:200]}"
    contacts = [
        json.loads(r.value or b"{}")["data"].get("contact")
        for r in records
        if r.topic == "intake.tips.v1"
    ]
    # Of a contact, events carry only the keyed hash (issue #20): no masked number either.
    assert any(c and c["phone_hash"] for c in contacts)
    assert all(c["masked_phone"] is None for c in contacts if c)
    for service in ("intake", "dispatch", "escalation", "ledger"):
        log = services.log_text(service)
        for secret in secrets:
            assert secret not in log, f"{secret} in the {service} log"
