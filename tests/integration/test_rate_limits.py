"""Intake's rate limits: 429 with Retry-After, shared through the database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
from fastapi import FastAPI

from services.intake.app import create_app
from services.runtime.settings import Settings


@pytest.fixture(scope="module")
async def strict(migrated: Settings) -> AsyncIterator[FastAPI]:
    """Intake with small limits, running for the whole module."""
    settings = migrated.model_copy(
        update={
            "rate_limit_tips_per_address_per_hour": 3,
            "rate_limit_tips_per_phone_per_day": 2,
            "rate_limit_wrong_codes_per_tracking_no_per_hour": 3,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    """A client reaching ``app`` from ``address``."""
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _address() -> str:
    # Every test its own address: counters from other tests in this hour stay out of it.
    return f"10.{uuid4().int % 250}.{uuid4().int % 250}.{uuid4().int % 250}"


def _tip(phone: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"text": "有人占道经营", "grid_id": "T01V01G01"}
    if phone:
        body["contact"] = {"phone": phone}
    return body


async def test_one_address_may_submit_so_many_tips_an_hour(strict: FastAPI) -> None:
    async with _from(strict, _address()) as client:
        answers = [await client.post("/v1/tips", json=_tip()) for _ in range(4)]
    assert [a.status_code for a in answers] == [201, 201, 201, 429]
    refused = answers[-1]
    assert refused.headers["content-type"] == "application/problem+json"
    assert 0 < int(refused.headers["retry-after"]) <= 3600


async def test_one_phone_number_may_report_so_much_a_day_from_any_address(strict: FastAPI) -> None:
    phone = f"139{uuid4().int % 10**8:08d}"
    codes = []
    for _ in range(3):
        async with _from(strict, _address()) as client:
            codes.append((await client.post("/v1/tips", json=_tip(phone))).status_code)
    assert codes == [201, 201, 429]


async def test_guessing_access_codes_locks_the_tracking_number_for_the_hour(
    strict: FastAPI,
) -> None:
    async with _from(strict, _address()) as client:
        tip = (await client.post("/v1/tips", json=_tip())).json()
        other = (await client.post("/v1/tips", json=_tip())).json()
    async with _from(strict, _address()) as client:
        url = f"/v1/tips/{tip['tracking_no']}"
        guesses = [
            (await client.get(url, params={"code": f"{n:06d}"})).status_code for n in range(3)
        ]
        assert guesses == [404, 404, 404]
        # Now even the right code waits: the guesser cannot tell it from a wrong one.
        locked = await client.get(url, params={"code": tip["access_code"]})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        fine = await client.get(
            f"/v1/tips/{other['tracking_no']}", params={"code": other["access_code"]}
        )
        assert fine.status_code == 200
