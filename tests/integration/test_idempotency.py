"""Idempotency-Keys: a retry is recognised only as the same submission. The same key with
another body is refused (422, naming the key), not answered with the first tip; and a web key
is scoped to the address it came from, as grid keys are to the worker and Open311 keys to the
client's API key, so one citizen's key never reaches another's tip."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from services.intake.app import create_app
from services.runtime.settings import Settings
from tests.conftest import TokenFactory

Clients = tuple[httpx.AsyncClient, httpx.AsyncClient]

TIP = {"text": "小区门口路灯不亮", "grid_id": "T02V01G01", "anonymous": True}
OTHER = {"text": "菜市场门口污水横流", "grid_id": "T02V01G01", "anonymous": True}


@pytest.fixture(scope="module")
async def citizens(migrated: Settings) -> AsyncIterator[Clients]:
    """Intake in process, reached by two citizens from two addresses."""
    app = create_app(migrated)
    async with app.router.lifespan_context(app):
        one = httpx.ASGITransport(app=app, client=("198.51.100.1", 40001))
        two = httpx.ASGITransport(app=app, client=("198.51.100.2", 40002))
        async with (
            httpx.AsyncClient(transport=one, base_url="http://test") as first,
            httpx.AsyncClient(transport=two, base_url="http://test") as second,
        ):
            yield first, second


def assert_key_reused(answer: httpx.Response, key: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["idempotency_key"] == key
    assert key in problem["detail"]


async def test_the_same_key_with_another_body_is_refused(citizens: Clients) -> None:
    http, _ = citizens
    key = str(uuid4())
    first = await http.post("/v1/tips", json=TIP, headers={"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    again = await http.post("/v1/tips", json=TIP, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json() == first.json()
    other = await http.post("/v1/tips", json=OTHER, headers={"Idempotency-Key": key})
    assert_key_reused(other, key)


async def test_a_web_key_is_scoped_to_its_address(citizens: Clients) -> None:
    first, second = citizens
    key = "tip-1"  # what two clients may well both send
    mine = await first.post("/v1/tips", json=TIP, headers={"Idempotency-Key": key})
    theirs = await second.post("/v1/tips", json=TIP, headers={"Idempotency-Key": key})
    assert (mine.status_code, theirs.status_code) == (201, 201), theirs.text
    assert mine.json()["tip_id"] != theirs.json()["tip_id"]
    assert mine.json()["access_code"] != theirs.json()["access_code"]


async def test_a_grid_report_with_a_reused_key_and_another_body_is_refused(
    citizens: Clients, token: TokenFactory
) -> None:
    http, _ = citizens
    worker = {"authorization": f"Bearer {token('grid_worker', 'grid:T02V01G01')}"}
    key = str(uuid4())
    headers = {**worker, "Idempotency-Key": key}
    report = {"grid_id": "T02V01G01", "text": "村道上有人晒玉米占道"}
    first = await http.post("/v1/grid/reports", json=report, headers=headers)
    assert first.status_code == 201, first.text
    changed = {**report, "text": "村道上有人堆放建筑垃圾"}
    assert_key_reused(await http.post("/v1/grid/reports", json=changed, headers=headers), key)
