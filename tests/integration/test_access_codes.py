"""Issue 13 item 8: access codes. Wrong guesses are counted atomically, per tracking number and
per guessing address; codes are stored as a keyed hash; the page sends the code in a header.

Every app here runs on a movable clock and the session's real PostgreSQL; each test uses its
own tracking numbers and addresses, so the counters of one never reach another.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from sqlalchemy import select, text

from services.intake.app import create_app
from services.intake.models import Tip
from services.runtime.db import create_engine, ensure_database, session_factory
from services.runtime.migrations import alembic_config, upgrade
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock
from tests.support.infra import Infra

# Per tracking number 3 wrong codes an hour (one more every 20 minutes), per address 5 (one
# more every 12 minutes).
PER_NUMBER, PER_ADDRESS = 3, 5
NOT_FOUND = "未找到该编号，或查询码不正确。"


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock(datetime(2026, 11, 21, 9, 30, tzinfo=UTC))


@pytest.fixture(scope="module")
async def app(migrated: Settings, clock: MovableClock) -> AsyncIterator[FastAPI]:
    settings = migrated.model_copy(
        update={
            "rate_limit_wrong_codes_per_tracking_no_per_hour": PER_NUMBER,
            "rate_limit_wrong_codes_per_address_per_hour": PER_ADDRESS,
        }
    )
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture(autouse=True)
def later(clock: MovableClock) -> None:
    """Each test at 09:00 a day after the one before: no guard of an earlier test holds."""
    clock.now = clock.now.replace(hour=9, minute=0, second=0) + timedelta(days=1)


def _from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _address() -> str:
    return f"10.{uuid4().int % 250}.{uuid4().int % 250}.{uuid4().int % 250}"


async def _tip(app: FastAPI) -> dict[str, str]:
    async with _from(app, _address()) as client:
        answer = await client.post(
            "/v1/tips", json={"text": "有人占道经营", "grid_id": "T01V01G01"}
        )
    assert answer.status_code == 201
    body: dict[str, str] = answer.json()
    return body


async def _look_up(client: httpx.AsyncClient, tracking_no: str, code: str) -> httpx.Response:
    return await client.get(f"/v1/tips/{tracking_no}", headers={"Access-Code": code})


def _wrong(code: str, n: int = 1) -> str:
    return f"{(int(code) + n) % 10**6:06d}"


def _unknown_number() -> str:
    return f"QX20000101-{uuid4().int % 10**6:06d}"


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def _stored(app: FastAPI, tracking_no: str) -> Tip:
    async with _runtime(app).sessions() as session:
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
    assert tip is not None
    return tip


async def test_a_concurrent_burst_of_wrong_codes_evaluates_no_more_than_the_limit(
    app: FastAPI,
) -> None:
    """Thirty wrong guesses at once, each from its own address: three are evaluated (404),
    the rest refused (429) before the code is looked at; then even the right code waits."""
    tip = await _tip(app)

    async def guess(n: int) -> int:
        async with _from(app, _address()) as client:
            return (
                await _look_up(client, tip["tracking_no"], _wrong(tip["access_code"], n))
            ).status_code

    answers = await asyncio.gather(*(guess(n) for n in range(1, 31)))
    assert sorted(answers) == [404] * PER_NUMBER + [429] * (30 - PER_NUMBER)
    async with _from(app, _address()) as owner:
        assert (await _look_up(owner, tip["tracking_no"], tip["access_code"])).status_code == 429


async def test_an_address_over_its_limit_is_refused_and_does_not_count_against_the_number(
    app: FastAPI, clock: MovableClock
) -> None:
    victim = await _tip(app)
    async with _from(app, _address()) as guesser:
        # Its allowance of wrong codes, spent on numbers of no one.
        for _ in range(PER_ADDRESS):
            spent = await _look_up(guesser, _unknown_number(), "123456")
            assert spent.status_code == 404 and spent.json()["detail"] == NOT_FOUND
        # Then it goes for a citizen's number: refused, and none of it counts against it.
        for n in range(1, 2 * PER_NUMBER + 1):
            refused = await _look_up(
                guesser, victim["tracking_no"], _wrong(victim["access_code"], n)
            )
            assert refused.status_code == 429
            assert refused.headers["content-type"] == "application/problem+json"
            problem = refused.json()
            assert problem["type"] == "https://whistle.example/problems/access-code-guesses"
            assert problem["detail"] == "查询码错误次数过多，请稍后再试。"
            # One wrong code comes back every 12 minutes: the injected clock has not moved.
            assert refused.headers["retry-after"] == "720"
        # Even its right code is not looked at while it is over.
        assert (
            await _look_up(guesser, victim["tracking_no"], victim["access_code"])
        ).status_code == 429
        async with _from(app, _address()) as owner:
            mine = await _look_up(owner, victim["tracking_no"], victim["access_code"])
            assert mine.status_code == 200 and mine.json()["tracking_no"] == victim["tracking_no"]
        # Twelve minutes later the guesser has one guess again, and one only.
        clock.advance(timedelta(minutes=12))
        assert (await _look_up(guesser, _unknown_number(), "123456")).status_code == 404
        assert (await _look_up(guesser, _unknown_number(), "123456")).status_code == 429


async def test_a_right_code_does_not_count_as_a_wrong_one(app: FastAPI) -> None:
    tip = await _tip(app)
    async with _from(app, _address()) as owner:
        for _ in range(3 * PER_ADDRESS):
            assert (
                await _look_up(owner, tip["tracking_no"], tip["access_code"])
            ).status_code == 200


async def test_a_guessed_number_is_slowed_and_its_owner_gets_in_again(
    app: FastAPI, clock: MovableClock
) -> None:
    """The number's allowance spent from many addresses, it takes one code every 20 minutes:
    the owner waits that long, not the rest of the hour, and a guesser gets three a hour."""
    tip = await _tip(app)
    for n in range(1, PER_NUMBER + 1):
        async with _from(app, _address()) as guesser:
            wrong = await _look_up(guesser, tip["tracking_no"], _wrong(tip["access_code"], n))
            assert wrong.status_code == 404
    async with _from(app, _address()) as owner:
        locked = await _look_up(owner, tip["tracking_no"], tip["access_code"])
        assert locked.status_code == 429 and locked.headers["retry-after"] == "1200"
        assert locked.json()["detail"] == "查询码错误次数过多，请稍后再试。"
        clock.advance(timedelta(minutes=20))
        assert (await _look_up(owner, tip["tracking_no"], tip["access_code"])).status_code == 200
        # The right code gave its turn back: the owner may look again at once.
        assert (await _look_up(owner, tip["tracking_no"], tip["access_code"])).status_code == 200


async def test_the_code_in_the_url_is_refused_and_not_looked_at(app: FastAPI) -> None:
    tip = await _tip(app)
    async with _from(app, _address()) as client:
        for code in [tip["access_code"]] + [_wrong(tip["access_code"], n) for n in range(1, 5)]:
            refused = await client.get(f"/v1/tips/{tip['tracking_no']}", params={"code": code})
            assert refused.status_code == 400
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "https://whistle.example/problems/access-code-in-url"
        # None of those counted: the header still opens the tip.
        fine = await _look_up(client, tip["tracking_no"], tip["access_code"])
        assert fine.status_code == 200
        assert fine.headers["cache-control"] == "no-store"


async def test_codes_are_stored_as_a_keyed_hash(app: FastAPI) -> None:
    tip = await _tip(app)
    stored = await _stored(app, tip["tracking_no"])
    bare = hashlib.sha256(stored.id.bytes + tip["access_code"].encode()).hexdigest()
    assert stored.access_code_hash.startswith("hmac-sha256:")
    assert bare not in stored.access_code_hash
    assert tip["access_code"] not in stored.access_code_hash


@pytest.mark.parametrize("legacy", ["sha256:{}", "{}"])
async def test_a_code_hashed_with_bare_sha256_still_opens_its_tip_and_is_rehashed(
    app: FastAPI, legacy: str
) -> None:
    """``sha256:<hex>``: as the migration marked a hash stored before; ``<hex>``: as a replica
    not upgraded yet still writes one during a rolling deploy."""
    tip = await _tip(app)
    tip_id = (await _stored(app, tip["tracking_no"])).id
    old = legacy.format(hashlib.sha256(tip_id.bytes + tip["access_code"].encode()).hexdigest())
    await _set_hash(app, tip_id, old)
    async with _from(app, _address()) as client:
        wrong = await _look_up(client, tip["tracking_no"], _wrong(tip["access_code"]))
        assert wrong.status_code == 404
        assert (await _stored(app, tip["tracking_no"])).access_code_hash == old
        assert (await _look_up(client, tip["tracking_no"], tip["access_code"])).status_code == 200
        rehashed = (await _stored(app, tip["tracking_no"])).access_code_hash
        assert rehashed.startswith("hmac-sha256:")
        assert (await _look_up(client, tip["tracking_no"], tip["access_code"])).status_code == 200


async def _set_hash(app: FastAPI, tip_id: UUID, value: str) -> None:
    async with _runtime(app).transaction() as session:
        await session.execute(
            text("UPDATE tip SET access_code_hash = :h WHERE id = :id"), {"h": value, "id": tip_id}
        )


async def test_the_migration_marks_the_hashes_stored_before_it(infra: Infra) -> None:
    script = ScriptDirectory.from_config(alembic_config("intake"))
    ours = next(r for r in script.walk_revisions() if r.revision.endswith("_access_codes"))
    before = ours.down_revision
    assert isinstance(before, str)
    url = infra.fresh_database_url("intake")
    await ensure_database(url)
    await upgrade("intake", url, before)
    engine = create_engine(url, pool_size=1)
    tip_id = uuid4()
    bare = hashlib.sha256(tip_id.bytes + b"123456").hexdigest()
    try:
        async with session_factory(engine)() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO tip (id, tracking_no, access_code_hash, channel, text, "
                    "received_at, status, anonymous, attachments, resolved_on_spot, joined_case, "
                    "resolution_round) VALUES (:id, 'QX20261121-000001', :h, 'web', 't', now(), "
                    "'received', false, '[]', false, false, 0)"
                ),
                {"id": tip_id, "h": bare},
            )
        await upgrade("intake", url)
        async with session_factory(engine)() as session:
            stored = await session.scalar(
                text("SELECT access_code_hash FROM tip WHERE id = :id"), {"id": tip_id}
            )
    finally:
        await engine.dispose()
    assert stored == f"sha256:{bare}"
