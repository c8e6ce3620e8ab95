"""Intake's rate limits: 429 with Retry-After, shared through the database.

Every test sets intake's clock itself (the app's injected clock, never the wall clock), so a
run crossing an hour or a day is like any other. Each uses its own addresses and phone numbers,
so the limits of one test stay out of another's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.intake.app import create_app
from services.intake.gcra import Verdict, gcra
from services.intake.ratelimit import HOUR, Limit, hit
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock

# 3 tips an hour: the whole allowance at once, then one every 20 minutes.
TIPS_AN_HOUR = 3
PROXY = "10.9.0.7"


def _strict(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_tips_per_address_per_hour": TIPS_AN_HOUR,
            "rate_limit_tips_per_phone_per_day": 2,
            **update,
        }
    )


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 11, 21, 9, tzinfo=UTC))


@pytest.fixture(scope="module")
async def strict(migrated: Settings, clock: MovableClock) -> AsyncIterator[FastAPI]:
    """Intake with small limits and a clock the tests move, running for the whole module."""
    app = create_app(_strict(migrated), clock)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(scope="module")
async def behind_proxy(migrated: Settings, clock: MovableClock) -> AsyncIterator[FastAPI]:
    """The same, behind an ingress whose pods are in 10.9.0.0/16. Beside ``strict``, so in a
    consumer group of its own: two intakes of one group, started and stopped in turn, left the
    embedded broker's group unable to take the next member (the next module's intake never
    got its partitions)."""
    settings = _strict(migrated, trusted_proxies=["10.9.0.0/16"], kafka_group_prefix="proxied")
    app = create_app(settings, clock)
    async with app.router.lifespan_context(app):
        yield app


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client reaching ``app`` from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _address() -> str:
    return f"172.{16 + uuid4().int % 16}.{uuid4().int % 250}.{uuid4().int % 250}"


def _tip(phone: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"text": "有人占道经营", "grid_id": "T01V01G01"}
    if phone:
        body["contact"] = {"phone": phone}
    return body


async def _post(client: httpx.AsyncClient, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"x-forwarded-for": forwarded_for} if forwarded_for else {}
    return await client.post("/v1/tips", json=_tip(), headers=headers)


async def test_one_address_may_submit_so_many_tips_an_hour(
    strict: FastAPI, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 11, 21, 10, 15, tzinfo=UTC)
    async with _from(strict, _address()) as client:
        answers = [await _post(client) for _ in range(TIPS_AN_HOUR + 1)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429]
        refused = answers[-1]
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == "请求过于频繁，请稍后再试。"
        # The real wait for the next tip: one of the three comes back after 20 minutes.
        assert refused.headers["retry-after"] == "1200"
        clock.advance(timedelta(seconds=1199))
        assert (await _post(client)).status_code == 429
        clock.advance(timedelta(seconds=1))
        assert (await _post(client)).status_code == 201
        assert (await _post(client)).status_code == 429


async def test_no_burst_of_twice_the_limit_across_the_hour(
    strict: FastAPI, clock: MovableClock
) -> None:
    """Fixed windows counted from the full hour let three tips through at 10:59:59 and three
    more at 11:00:01."""
    clock.now = datetime(2026, 11, 21, 10, 59, 59, tzinfo=UTC)
    async with _from(strict, _address()) as client:
        before = [(await _post(client)).status_code for _ in range(TIPS_AN_HOUR)]
        clock.advance(timedelta(seconds=2))
        after = [await _post(client) for _ in range(TIPS_AN_HOUR)]
    assert before == [201, 201, 201]
    assert [a.status_code for a in after] == [429, 429, 429]
    assert {a.headers["retry-after"] for a in after} == {str(20 * 60 - 2)}


async def test_a_steady_sender_gets_one_tip_every_twenty_minutes(
    strict: FastAPI, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)  # across midnight, too
    accepted = []
    async with _from(strict, _address()) as client:
        for minute in range(0, 90, 5):
            if (await _post(client)).status_code == 201:
                accepted.append(minute)
            clock.advance(timedelta(minutes=5))
    assert accepted == [0, 5, 10, 20, 40, 60, 80]


async def test_one_phone_number_may_report_so_much_a_day_from_any_address(
    strict: FastAPI, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 11, 22, 8, tzinfo=UTC)
    phone = f"139{uuid4().int % 10**8:08d}"
    answers = []
    for _ in range(3):
        async with _from(strict, _address()) as client:
            answers.append(await client.post("/v1/tips", json=_tip(phone)))
    assert [a.status_code for a in answers] == [201, 201, 429]
    assert answers[-1].headers["retry-after"] == str(12 * 3600)  # 2 a day: one every 12 hours


async def test_a_refused_tip_counts_against_no_limit(strict: FastAPI, clock: MovableClock) -> None:
    """Refused for its phone number, a tip uses none of its address's allowance."""
    clock.now = datetime(2026, 11, 22, 9, tzinfo=UTC)
    phone = f"138{uuid4().int % 10**8:08d}"
    async with _from(strict, _address()) as client:
        for _ in range(2):
            assert (await client.post("/v1/tips", json=_tip(phone))).status_code == 201
    async with _from(strict, _address()) as client:
        refused = [await client.post("/v1/tips", json=_tip(phone)) for _ in range(5)]
        assert {a.status_code for a in refused} == {429}
        assert [(await _post(client)).status_code for _ in range(4)] == [201, 201, 201, 429]


async def _hit(app: FastAPI, limit: Limit, key: str, now: datetime) -> Verdict:
    """One request against ``limit`` straight through the database, in its own transaction."""
    runtime: Runtime = app.state.runtime
    async with runtime.transaction() as session:
        return await hit(session, limit, key, now)


async def test_the_database_applies_the_same_rule_as_the_function(strict: FastAPI) -> None:
    """The SQL statement and services/intake/gcra.py agree, request by request."""
    limit, key = Limit("test/agreement", 4, HOUR), str(uuid4())
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    offsets = [0, 0, 1, 2, 3, 4, 600, 899, 900, 901, 1800, 1801, 5000, 9000, 9000, 9000, 9000]
    tat = None
    for offset in offsets:
        now = start + timedelta(seconds=offset)
        expected = gcra(now, limit.limit, limit.period, tat)
        assert await _hit(strict, limit, key, now) == expected, f"at +{offset}s"
        tat = expected.tat


async def test_concurrent_requests_cannot_share_one_allowance(strict: FastAPI) -> None:
    limit, key = Limit("test/concurrent", 5, HOUR), str(uuid4())
    now = datetime(2026, 11, 23, 12, tzinfo=UTC)
    verdicts = await asyncio.gather(*(_hit(strict, limit, key, now) for _ in range(20)))
    assert sum(v.allowed for v in verdicts) == 5


async def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored(
    strict: FastAPI, behind_proxy: FastAPI, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 11, 24, 10, tzinfo=UTC)
    for app in (strict, behind_proxy):  # trusting nobody; trusting a proxy that is not the peer
        async with _from(app, _address()) as client:
            codes = [(await _post(client, _address())).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]


async def test_behind_a_trusted_proxy_each_citizen_has_their_own_limits(
    behind_proxy: FastAPI, clock: MovableClock
) -> None:
    clock.now = datetime(2026, 11, 24, 11, tzinfo=UTC)
    first, second = _address(), _address()
    async with _from(behind_proxy, PROXY) as ingress:
        firsts = [(await _post(ingress, first)).status_code for _ in range(4)]
        # What the citizen wrote is left of what the ingress saw: it changes nothing.
        spoofed = await _post(ingress, f"{_address()}, {first}")
        # Through a second hop of ours (10.9.0.8), the client is still the address left of it.
        seconds = [(await _post(ingress, f"{second}, 10.9.0.8")).status_code for _ in range(4)]
    assert firsts == [201, 201, 201, 429]
    assert spoofed.status_code == 429
    assert seconds == [201, 201, 201, 429]
