"""A tip travels through the four services, run as real processes, to its ledger trail."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.support.journey import EXPECTED_TRAIL, case_of, complete_trail, submit
from tests.support.stack import ServiceProcesses

pytestmark = pytest.mark.e2e

# (body, expected township, expected matter, expected unit)
TIPS: list[tuple[dict[str, Any], str, str, str]] = [
    (
        {"text": "村口有人占道摆摊，车都过不去了", "grid_id": "T03V02G01"},
        "T03",
        "CG-001",
        "T03-CGJ",
    ),
    (
        {"text": "楼下广场舞高音喇叭每天晚上十点还在放，太吵了", "grid_id": "T03V01G02"},
        "T03",
        "CG-007",
        "T03-CGJ",
    ),
    (
        {"text": "集市上卖菜的用鬼秤，短斤少两", "address": "城关镇十里铺村集市"},
        "T03",
        "SC-005",
        "T03-SCJGJ",
    ),
    (
        # Coordinates only (as from WeChat or a phone's GPS): 城关镇五里铺村, grid T03V02G02.
        {"text": "村口有人占道摆摊，车都过不去了", "location": {"lat": 38.76, "lon": 113.225}},
        "T03",
        "CG-001",
        "T03-CGJ",
    ),
    (
        {"text": "小区楼道里有人飞线充电，消防通道也被堵了", "grid_id": "T03V01G01"},
        "T03",
        "YJ-006",
        "T03-YJGLJ",
    ),
]


def _check_trail(entries: list[dict[str, Any]]) -> None:
    types = [e["type"] for e in entries]
    counts = Counter(types)
    assert all(counts[t] == 1 for t in EXPECTED_TRAIL), counts
    assert [t for t in types if t in EXPECTED_TRAIL] == EXPECTED_TRAIL
    assert sorted(e["seq"] for e in entries) == sorted({e["seq"] for e in entries})


async def test_a_tip_is_routed_to_the_right_township_unit_and_recorded_in_order(
    services: ServiceProcesses, http: httpx.AsyncClient, auditor_token: str
) -> None:
    settings = services.settings
    auth = {"authorization": f"Bearer {auditor_token}"}
    for body, township, matter, unit in TIPS:
        tip = await submit(http, settings, {**body, "contact": {"phone": "13912345678"}})
        case_id = await case_of(http, settings, tip)

        case = (
            await http.get(f"{settings.url_of('dispatch')}/v1/cases/{case_id}", headers=auth)
        ).json()
        assert (case["township_code"], case["matter_code"], case["unit_id"]) == (
            township,
            matter,
            unit,
        )
        assert case["status"] == "assigned"
        assert case["routing"]["explanation"], "every routing decision is explained"

        deadlines = (
            await http.get(
                f"{settings.url_of('escalation')}/v1/cases/{case_id}/deadlines", headers=auth
            )
        ).json()["deadlines"]
        assert {d["kind"] for d in deadlines} == {"first_response", "resolution"}

        entries = await complete_trail(http, settings, case_id, auditor_token)
        _check_trail(entries)
        assert entries[0]["event"]["data"]["tip_id"] == tip.tip_id

        status = (
            await http.get(
                f"{settings.url_of('intake')}/v1/tips/{tip.tracking_no}",
                headers={"Access-Code": tip.access_code},
            )
        ).json()
        assert status["status"] == "assigned"
        assert [e["status"] for e in status["timeline"]] == ["received", "assigned"]


async def test_every_event_lands_once_even_when_services_restart_midway(
    services: ServiceProcesses, http: httpx.AsyncClient, auditor_token: str
) -> None:
    settings = services.settings
    bodies = [body for body, *_ in TIPS] * 3
    first = [await submit(http, settings, body) for body in bodies[:6]]
    # Dispatch dies without warning while it is taking these tips; the ledger is stopped
    # gracefully; more tips arrive while both are down.
    services.kill("dispatch")
    services.stop("ledger")
    second = [await submit(http, settings, body) for body in bodies[6:]]
    services.start("dispatch", "ledger")

    tips = first + second
    case_ids = await asyncio.gather(*(case_of(http, settings, t, within=60) for t in tips))
    assert len(set(case_ids)) == len(tips), "one case per tip, none opened twice"
    trails = await asyncio.gather(
        *(complete_trail(http, settings, c, auditor_token, within=60) for c in case_ids)
    )
    for tip, trail in zip(tips, trails, strict=True):
        _check_trail(trail)
        assert trail[0]["event"]["data"]["tip_id"] == tip.tip_id


async def test_logs_are_json_with_case_and_event_ids_and_never_a_phone_number(
    services: ServiceProcesses, http: httpx.AsyncClient, auditor_token: str
) -> None:
    settings = services.settings
    phone = "13700001111"
    tip = await submit(
        http,
        settings,
        {"text": "村里有人乱倒垃圾", "grid_id": "T03V02G02", "contact": {"phone": phone}},
    )
    case_id = await case_of(http, settings, tip)
    entries = await complete_trail(http, settings, case_id, auditor_token)

    # The contact is sealed in the ledger's entry; opened, it holds the keyed hash alone.
    assert set(entries[0]["event"]["data"]["contact"]) == {"x-sealed"}
    opened = entries[0]["personal"]["contact"]
    assert opened["masked_phone"] is None and opened["phone_hash"]
    for entry in entries:
        assert phone not in json.dumps(entry, ensure_ascii=False)
    for service in ("intake", "dispatch", "escalation", "ledger"):
        text = services.log_text(service)
        assert phone not in text
        lines = [json.loads(line) for line in text.splitlines() if line.strip()]
        assert lines and all(
            {"time", "level", "service", "case_id", "event_id"} <= set(r) for r in lines
        )
    # The ledger's line for recording the deadlines names the case and the event.
    deadline_event = next(e for e in entries if e["type"] == "whistle.deadlines.set")
    ledger_lines = [json.loads(line) for line in services.log_text("ledger").splitlines()]
    assert any(
        r["case_id"] == case_id and r["event_id"] == deadline_event["event_id"]
        for r in ledger_lines
    )
