"""Following a citizen's tip through the public APIs of the running services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from services.runtime.settings import Settings
from tests.support.infra import eventually

EXPECTED_TRAIL = [
    "whistle.tip.received",
    "whistle.case.opened",
    "whistle.case.assigned",
    "whistle.deadlines.set",
]


@dataclass(frozen=True)
class SubmittedTip:
    tip_id: str
    tracking_no: str
    access_code: str


async def submit(http: httpx.AsyncClient, settings: Settings, body: dict[str, Any]) -> SubmittedTip:
    response = await http.post(f"{settings.url_of('intake')}/v1/tips", json=body)
    assert response.status_code == 201, response.text
    data = response.json()
    return SubmittedTip(data["tip_id"], data["tracking_no"], data["access_code"])


async def case_of(
    http: httpx.AsyncClient, settings: Settings, tip: SubmittedTip, within: float = 30
) -> str:
    async def probe() -> str | None:
        response = await http.get(
            f"{settings.url_of('intake')}/v1/tips/{tip.tracking_no}",
            headers={"Access-Code": tip.access_code},
        )
        assert response.status_code == 200, response.text
        return response.json()["case_id"]

    # As a citizen's app would poll: the lookup is rate-limited per address (300 an hour by
    # default, which `whistle up` runs with).
    return await eventually(
        probe, within=within, what=f"a case for tip {tip.tracking_no}", every=0.5
    )


async def complete_trail(
    http: httpx.AsyncClient,
    settings: Settings,
    case_id: str,
    token: str,
    within: float = 30,
    expected: frozenset[str] = frozenset(EXPECTED_TRAIL),
) -> list[dict[str, Any]]:
    """The case's ledger trail once it holds at least the ``expected`` event types (by
    default the four events of a routed tip)."""

    async def probe() -> list[dict[str, Any]] | None:
        response = await http.get(
            f"{settings.url_of('ledger')}/v1/cases/{case_id}/trail",
            headers={"authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        entries: list[dict[str, Any]] = response.json()["entries"]
        types = {e["type"] for e in entries}
        return entries if types >= expected else None

    return await eventually(probe, within=within, what=f"the ledger trail of case {case_id}")
