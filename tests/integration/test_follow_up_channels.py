"""回访 over every channel, through the real intake: a 12345 operator records a follow-up
call's answer, a WeChat follower rates by replying, the web as before. Intake follows the
case events dispatch publishes (published here as dispatch would), and each rating leaves on
intake.tips.v1 with the channel it was taken by."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select

from contracts.events import CaseContacted
from services.intake.models import Tip
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_feedback import Dispatch, rate, reaches, status_of, submit
from tests.integration.test_wechat import (
    WeChat,
    content_of,
    new_msg_id,
    new_openid,
    published,
    served,
    stored_anything,
    text,
    tip_of,
)
from tests.support.infra import eventually

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
async def wechat(migrated: Settings) -> AsyncIterator[WeChat]:
    """Intake, in process, on a clock of the test's (WeChat signs with it)."""
    async with served(migrated) as serving:
        yield serving


@pytest.fixture
def dispatch_events(producer: Any) -> Dispatch:
    return Dispatch(producer)


def operator(token: TokenFactory) -> dict[str, str]:
    return {"authorization": f"Bearer {token('hotline_operator')}"}


async def hotline_tip(client: httpx.AsyncClient, token: TokenFactory) -> dict[str, Any]:
    body = {
        "call_id": f"CALL-{random.randrange(10**9)}",
        "caller_number": f"139{random.randrange(10**8):08d}",
        "summary": "村口有人占道摆摊，车都过不去了",
        "grid_id": "T03V02G01",
    }
    answer = await client.post("/v1/hotline/tickets", json=body, headers=operator(token))
    assert answer.status_code == 201, answer.text
    tip: dict[str, Any] = answer.json()
    return tip


async def resolved(client: httpx.AsyncClient, events: Dispatch, tip: dict[str, Any]) -> UUID:
    """The tip's case opened, worked and resolved by dispatch; the tip waits for its 回访."""
    tip_id = UUID(tip["tip_id"])
    case_id = await events.open(tip_id)
    await events.start(case_id, tip_id)
    await events.resolve(case_id, tip_id)
    await reaches(client, tip, "resolved")
    return case_id


async def call(
    client: httpx.AsyncClient,
    token: TokenFactory,
    tip: dict[str, Any],
    answer: str,
    call_id: str,
    **extra: Any,
) -> httpx.Response:
    body = {"tracking_no": tip["tracking_no"], "call_id": call_id, "answer": answer, **extra}
    return await client.post("/v1/hotline/follow-ups", json=body, headers=operator(token))


# ---------------------------------------------------------------- 12345 follow-up calls


async def test_an_operator_records_the_citizens_rating_from_a_follow_up_call(
    wechat: WeChat, dispatch_events: Dispatch, token: TokenFactory, migrated: Settings
) -> None:
    client = wechat.client
    tip = await hotline_tip(client, token)
    case_id = await resolved(client, dispatch_events, tip)

    first = await call(client, token, tip, "basically_satisfied", "FU-1", comment="摊贩已撤走")
    assert first.status_code == 201, first.text
    recorded = first.json()
    assert recorded["answer_text"] == "基本满意" and recorded["rating"] is True
    assert (recorded["resolution_round"], recorded["reopening"]) == (1, False)
    event = await published(migrated.require_kafka(), tip["tip_id"], "whistle.tip.rated")
    data = event["data"]
    assert (data["channel"], data["rating"], data["case_id"]) == (
        "hotline",
        "basically_satisfied",
        str(case_id),
    )
    assert data["recorded_by"] == "test-hotline_operator" and data["comment"] == "摊贩已撤走"

    # The same call sent again is what it recorded; the call id with another answer is not.
    again = await call(client, token, tip, "basically_satisfied", "FU-1", comment="摊贩已撤走")
    assert again.status_code == 200 and again.json()["recorded_at"] == recorded["recorded_at"]
    reused = await call(client, token, tip, "dissatisfied", "FU-1")
    assert reused.status_code == 422 and reused.headers["content-type"] == PROBLEM
    # One rating per resolution, whichever channel took it.
    other = await call(client, token, tip, "satisfied", "FU-2")
    assert other.status_code == 409 and other.json()["detail"] == "您已评价过本次办理结果。"
    web = await rate(client, tip, "satisfied")
    assert web.status_code == 409
    assert (await status_of(client, tip))["status_text"] == "已办结，您已评价"


async def test_an_unreachable_citizen_is_recorded_and_may_still_rate(
    wechat: WeChat, dispatch_events: Dispatch, token: TokenFactory, migrated: Settings
) -> None:
    client = wechat.client
    tip = await hotline_tip(client, token)
    case_id = await resolved(client, dispatch_events, tip)

    missed = await call(client, token, tip, "unreachable", "FU-MISSED-" + tip["tip_id"][:8])
    assert missed.status_code == 201, missed.text
    assert missed.json()["rating"] is False and missed.json()["answer_text"] == "无法联系"
    event = await published(
        migrated.require_kafka(), tip["tip_id"], "whistle.tip.follow_up_unreachable"
    )
    assert event["data"]["case_id"] == str(case_id) and event["data"]["channel"] == "hotline"
    shown = await status_of(client, tip)
    assert shown["may_rate"] is True
    assert "回访电话未能联系到您" in [e["status_text"] for e in shown["timeline"]]

    later = await call(client, token, tip, "dissatisfied", "FU-LATER-" + tip["tip_id"][:8])
    assert later.status_code == 201 and later.json()["reopening"] is True


async def test_who_and_what_a_follow_up_call_cannot_record(
    wechat: WeChat, dispatch_events: Dispatch, token: TokenFactory
) -> None:
    client = wechat.client
    tip = await hotline_tip(client, token)
    body = {"tracking_no": tip["tracking_no"], "call_id": "FU-X", "answer": "satisfied"}
    # Only a 12345 operator records a call; the citizen rates on the page, with the code.
    assert (await client.post("/v1/hotline/follow-ups", json=body)).status_code == 401
    for role in ("grid_worker", "dispatcher", "unit_member"):
        headers = {"authorization": f"Bearer {token(role)}"}
        refused = await client.post("/v1/hotline/follow-ups", json=body, headers=headers)
        assert refused.status_code == 403 and refused.headers["content-type"] == PROBLEM

    early = await call(client, token, tip, "satisfied", "FU-EARLY")
    assert early.status_code == 409 and early.json()["detail"] == "案件尚未办结，办结后才能评价。"
    unknown = {**tip, "tracking_no": "QX20991231-000000"}
    assert (await call(client, token, unknown, "satisfied", "FU-NONE")).status_code == 404

    # A tip left without a number cannot be followed up by telephone.
    web_tip = await submit(client)
    await resolved(client, dispatch_events, web_tip)
    no_number = await call(client, token, web_tip, "satisfied", "FU-NO-NUMBER")
    assert no_number.status_code == 409
    assert no_number.json()["detail"] == "该诉求未留联系电话，无法电话回访。"
    assert (await rate(client, web_tip, "satisfied")).status_code == 201  # the page still may


# ---------------------------------------------------------------- WeChat replies


async def wechat_tip(wechat: WeChat, openid: str) -> dict[str, Any]:
    msg_id = new_msg_id()
    reply = content_of(await wechat.post(text(openid, "小区门口垃圾堆了三天没人清运", msg_id)))
    assert "评价 满意" in reply  # the follower is told how to rate once it is resolved
    tip = await tip_of(wechat.runtime, msg_id)
    return {
        "tip_id": str(tip.id),
        "tracking_no": tip.tracking_no,
        "access_code": reply.split("查询码 ")[1][:6],
    }


async def test_a_wechat_follower_rates_by_replying(
    wechat: WeChat, dispatch_events: Dispatch, migrated: Settings
) -> None:
    openid = new_openid()
    tip = await wechat_tip(wechat, openid)

    # Before the resolution there is nothing to rate, and no tip is made of the words.
    too_early = new_msg_id()
    reply = content_of(await wechat.post(text(openid, "评价 满意", too_early)))
    assert "没有等待评价的诉求" in reply
    async with wechat.runtime.sessions() as session:
        made = await session.scalar(select(func.count()).where(Tip.dedupe_key == too_early))
    assert made == 0 and await stored_anything(wechat.runtime, too_early)  # the message only

    case_id = await resolved(wechat.client, dispatch_events, tip)
    # Another follower cannot rate this follower's tip.
    stranger = content_of(await wechat.post(text(new_openid(), "评价 不满意")))
    assert "没有等待评价的诉求" in stranger

    msg_id = new_msg_id()
    thanks = content_of(await wechat.post(text(openid, "评价：基本满意", msg_id)))
    assert thanks == f"感谢您的评价：基本满意（受理编号 {tip['tracking_no']}）。"
    # WeChat's retry of the same message gets the same reply and rates once.
    assert content_of(await wechat.post(text(openid, "评价：基本满意", msg_id))) == thanks
    event = await published(migrated.require_kafka(), tip["tip_id"], "whistle.tip.rated")
    assert (event["data"]["channel"], event["data"]["rating"]) == ("wechat", "basically_satisfied")
    assert event["data"]["case_id"] == str(case_id)
    assert (await status_of(wechat.client, tip))["status_text"] == "已办结，您已评价"
    # Rated: "评价" again finds nothing waiting.
    assert "没有等待评价的诉求" in content_of(await wechat.post(text(openid, "评价 满意")))


async def test_a_bare_number_rates_only_while_a_tip_waits_for_it(
    wechat: WeChat, dispatch_events: Dispatch
) -> None:
    openid = new_openid()
    tip = await wechat_tip(wechat, openid)
    await resolved(wechat.client, dispatch_events, tip)

    reply = content_of(await wechat.post(text(openid, "３")))  # full-width, as phones type it
    assert reply.startswith("感谢您的评价：不满意")
    assert "案件将重新办理" in reply
    shown = await status_of(wechat.client, tip)
    assert "rated" in [e["status"] for e in shown["timeline"]]

    # Nothing waits any more: a "1" is a text like any other, and opens a tip.
    msg_id = new_msg_id()
    opened = content_of(await wechat.post(text(openid, "1", msg_id)))
    assert "您的诉求已受理" in opened
    assert (await tip_of(wechat.runtime, msg_id)).text == "1"


async def test_the_citizen_sees_when_the_unit_says_it_contacted_them(
    wechat: WeChat, dispatch_events: Dispatch
) -> None:
    client = wechat.client
    tip = await submit(client)
    tip_id = UUID(tip["tip_id"])
    case_id = await dispatch_events.open(tip_id)
    said = datetime(2026, 11, 21, 2, 20, tzinfo=UTC)
    step = dispatch_events._step(case_id, tip_id)
    await dispatch_events.publish(
        case_id, CaseContacted(**step, contacted_at=said, method="phone", note="电话告知已受理")
    )

    async def marked() -> dict[str, Any] | None:
        shown = await status_of(client, tip)
        found = [e for e in shown["timeline"] if e["status"] == "contacted"]
        return found[0] if found else None

    mark = await eventually(marked, what="the contact on the citizen's timeline")
    assert mark["status_text"] == "承办单位已与您联系"
    assert datetime.fromisoformat(mark["at"]) == said
    assert "电话告知已受理" not in str(await status_of(client, tip))  # the unit's note stays
