"""三率 that hold, through the four services run as real processes: a hotline tip is routed,
its unit contacts the citizen (联系群众) and resolves it; the dispatcher may not close it until
a 12345 operator has recorded the 回访 call; the ledger records it all, and /v1/kpis counts
the contact in 响应率 and the call's rating in 满意率."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.infra import eventually
from tests.support.journey import SubmittedTip, case_of, complete_trail
from tests.support.stack import ServiceProcesses
from tests.support.tips import OFFICER

pytestmark = pytest.mark.e2e

UNIT = "T03-CGJ"


async def unit_counts(
    http: httpx.AsyncClient, settings: Settings, auth: dict[str, str]
) -> dict[str, int]:
    answer = await http.get(
        f"{settings.url_of('ledger')}/v1/kpis", params={"group_by": "unit"}, headers=auth
    )
    assert answer.status_code == 200, answer.text
    for group in answer.json()["groups"]:
        if group["key"] == UNIT:
            counts: dict[str, int] = group["counts"]
            return counts
    return {}


async def act(
    http: httpx.AsyncClient,
    url: str,
    action: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    etag = (await http.get(url, headers=headers)).headers["etag"]
    return await http.post(
        f"{url}/{action}", json=body or {}, headers={**headers, "If-Match": etag}
    )


async def test_a_case_is_contacted_followed_up_by_telephone_closed_and_counted(
    services: ServiceProcesses, http: httpx.AsyncClient, token: TokenFactory, auditor_token: str
) -> None:
    settings = services.settings
    auditor = {"authorization": f"Bearer {auditor_token}"}
    operator = {"authorization": f"Bearer {token('hotline_operator')}"}
    officer = token("unit_member", f"unit:{UNIT}", subject=OFFICER)  # a valid 执法证
    unit = {"authorization": f"Bearer {officer}"}
    dispatcher = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}
    before = await unit_counts(http, settings, auditor)

    ticket = await http.post(
        f"{settings.url_of('intake')}/v1/hotline/tickets",
        json={
            "call_id": f"CALL-{random.randrange(10**9)}",
            "caller_number": f"139{random.randrange(10**8):08d}",
            "summary": "村口有人占道摆摊，车都过不去了",
            "grid_id": "T03V02G01",
        },
        headers=operator,
    )
    assert ticket.status_code == 201, ticket.text
    tip = SubmittedTip(**{k: ticket.json()[k] for k in ("tip_id", "tracking_no", "access_code")})
    case_id = await case_of(http, settings, tip)
    case_url = f"{settings.url_of('dispatch')}/v1/cases/{case_id}"
    assert (await http.get(case_url, headers=unit)).json()["unit_id"] == UNIT

    assert (await act(http, case_url, "accept", unit)).status_code == 200
    contact = {"contacted_at": datetime.now(UTC).isoformat(), "method": "phone"}
    assert (await act(http, case_url, "contact", unit, contact)).status_code == 200
    resolution = {"resolution": "on_the_spot", "note": "已劝离摊贩"}
    assert (await act(http, case_url, "resolve", unit, resolution)).status_code == 200
    early = await act(http, case_url, "close", dispatcher)
    assert early.status_code == 409 and "回访" in early.json()["detail"]

    async def resolved() -> bool:
        answer = await http.get(
            f"{settings.url_of('intake')}/v1/tips/{tip.tracking_no}",
            headers={"Access-Code": tip.access_code},
        )
        return bool(answer.json()["status"] == "resolved")

    await eventually(resolved, what="intake to see the resolution", every=0.5)
    called = await http.post(
        f"{settings.url_of('intake')}/v1/hotline/follow-ups",
        json={"tracking_no": tip.tracking_no, "call_id": f"FU-{tip.tip_id}", "answer": "satisfied"},
        headers=operator,
    )
    assert called.status_code == 201, called.text

    async def followed_up() -> str | None:
        return (await http.get(case_url, headers=dispatcher)).json()["followed_up_at"]

    await eventually(followed_up, what="dispatch to record the 回访")
    closed = await act(http, case_url, "close", dispatcher)
    assert closed.status_code == 200, closed.text

    entries = await complete_trail(
        http,
        settings,
        case_id,
        auditor_token,
        expected=frozenset({"whistle.case.contacted", "whistle.tip.rated", "whistle.case.closed"}),
    )
    [rating] = [e["event"]["data"] for e in entries if e["type"] == "whistle.tip.rated"]
    assert (rating["channel"], rating["rating"]) == ("hotline", "satisfied")

    async def counted() -> dict[str, int] | None:
        after = await unit_counts(http, settings, auditor)
        grown = {
            name: after.get(name, 0) - before.get(name, 0)
            for name in ("contacted_on_time", "contact_due", "rated_hotline", "satisfied")
        }
        return grown if all(grown.values()) else None

    assert await eventually(counted, what="the KPIs to count the case") == {
        "contacted_on_time": 1,
        "contact_due": 1,
        "rated_hotline": 1,
        "satisfied": 1,
    }
