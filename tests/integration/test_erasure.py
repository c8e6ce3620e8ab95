"""Forgetting a citizen without breaking the ledger (issue #20, items 2 and 1): tips go through
intake, dispatch and the ledger over a real broker; one is erased on request; the ledger's
export still verifies offline, and the erased tip's words, address and phone are nowhere in the
ledger's database, its export or the logs — while another tip's stay readable.

The three services get servers of their own: the ledger records every topic, and this module
searches all of its database.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from contracts.envelope import CloudEvent, new_event
from contracts.events import PersonalDataErased, TipRated, TipReceived, TipSupplemented
from contracts.topics import TIPS
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case, TipText
from services.intake.app import create_app as create_intake
from services.intake.models import Tip
from services.ledger import api as ledger_api
from services.ledger.app import create_app as create_ledger
from services.ledger.heads import TreeHead, load_public_key
from services.ledger.keys import reveal_documents
from services.ledger.merkle import leaf_hash, verify_inclusion
from services.ledger.models import LedgerEntry, TipKey
from services.ledger.verify import verify_export
from services.runtime.inbox import PoisonEvent
from services.runtime.retention import ERASED_TEXT
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import _in_process
from tests.integration.test_ledger import record
from tests.support.infra import Infra, embedded_servers, eventually, prepared_on
from tests.support.tips import case_of

PROBLEM = "application/problem+json"
ERASED_TYPE = PersonalDataErased.event_type


@dataclass(frozen=True)
class Citizen:
    text: str
    address: str
    phone: str
    name: str

    def body(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "address": self.address,
            "grid_id": "T03V02G01",
            "location": {"lat": 38.7613, "lon": 113.2187},
            "contact": {"name": self.name, "phone": self.phone},
        }

    def needles(self) -> dict[str, bytes]:
        """What must not remain of this citizen once erased, as UTF-8."""
        masked = self.phone[:3] + "****" + self.phone[-4:]
        return {
            "text": self.text.encode(),
            "address": self.address.encode(),
            "phone": self.phone.encode(),
            "masked phone": masked.encode(),
            "name": self.name.encode(),
        }


ERASED = Citizen(
    "楼道里有人飞线充电，堵住了消防通道，住在302的赵铁柱说过好几次了",
    "城关镇幸福路88号3单元",
    "13987654321",
    "赵铁柱",
)
KEPT = Citizen(
    "菜市场门口占道摆摊，早上七点到九点车过不去",
    "城关镇东大街菜市场南门",
    "13811112222",
    "钱多多",
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("erasure-servers")) as own:
        yield own


@pytest.fixture(scope="module")
async def own_settings(settings: Settings, servers: Infra) -> Settings:
    return await prepared_on(
        servers,
        settings,
        ("intake", "dispatch", "ledger"),
        ledger_tree_head_interval_seconds=3600,
    )


@dataclass(frozen=True)
class Pipeline:
    intake: httpx.AsyncClient
    intake_runtime: Runtime
    dispatch_runtime: Runtime
    ledger: httpx.AsyncClient
    ledger_runtime: Runtime


@pytest.fixture(scope="module")
async def pipeline(own_settings: Settings) -> AsyncIterator[Pipeline]:
    async for intake, intake_runtime in _in_process(create_intake(own_settings)):
        async for _, dispatch_runtime in _in_process(create_dispatch(own_settings)):
            async for ledger, ledger_runtime in _in_process(create_ledger(own_settings)):
                yield Pipeline(intake, intake_runtime, dispatch_runtime, ledger, ledger_runtime)


def bearer(token: TokenFactory, role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token(role)}"}


async def submit(pipeline: Pipeline, citizen: Citizen) -> tuple[UUID, str]:
    response = await pipeline.intake.post("/v1/tips", json=citizen.body())
    assert response.status_code == 201, response.text
    return UUID(response.json()["tip_id"]), response.json()["tracking_no"]


async def recorded(pipeline: Pipeline, subject: UUID, event_type: str) -> None:
    async def probe() -> bool | None:
        async with pipeline.ledger_runtime.sessions() as session:
            seq = await session.scalar(
                select(LedgerEntry.seq).where(
                    LedgerEntry.subject == str(subject),  # type: ignore[arg-type]
                    LedgerEntry.type == event_type,  # type: ignore[arg-type]
                )
            )
            return seq is not None or None

    await eventually(probe, within=30, what=f"{event_type} of {subject} in the ledger")


async def trail(pipeline: Pipeline, token: TokenFactory, case_id: UUID) -> dict[str, Any]:
    response = await pipeline.ledger.get(
        f"/v1/cases/{case_id}/trail", headers=bearer(token, "auditor")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def received(entries: list[dict[str, Any]], tip_id: UUID) -> dict[str, Any]:
    [entry] = [
        e for e in entries if e["type"] == "whistle.tip.received" and e["subject"] == str(tip_id)
    ]
    return entry


async def database_values(database_url: str) -> list[tuple[str, str, Any]]:
    """Every value of every column of every table of the database: (table, column, value)."""
    url = make_url(database_url)
    conn = await asyncpg.connect(
        host=url.host, port=url.port, user=url.username, database=url.database
    )
    try:
        tables = [
            r["tablename"]
            for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        found = []
        for table in tables:
            for row in await conn.fetch(f'SELECT * FROM "{table}"'):
                found += [(table, column, value) for column, value in row.items()]
        return found
    finally:
        await conn.close()


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


async def test_an_erased_tip_is_forgotten_and_the_ledger_still_verifies(
    pipeline: Pipeline,
    own_settings: Settings,
    token: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Whistle's own logs at their most verbose; aiokafka as the services pin it
    # (services/runtime/logs.py: never below WARNING, its DEBUG prints whole messages).
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.WARNING, logger="aiokafka")
    erased_tip, tracking_no = await submit(pipeline, ERASED)
    kept_tip, _ = await submit(pipeline, KEPT)
    erased_case = (await case_of(pipeline.dispatch_runtime, erased_tip)).id
    kept_case = (await case_of(pipeline.dispatch_runtime, kept_tip)).id
    await recorded(pipeline, erased_tip, "whistle.tip.received")
    await recorded(pipeline, kept_tip, "whistle.tip.received")
    # A case's trail reaches its tips through the case's opening: wait for that too.
    await recorded(pipeline, erased_case, "whistle.case.opened")
    await recorded(pipeline, kept_case, "whistle.case.opened")

    # Before: the log holds ciphertext, the trail opens it with the tip's key.
    async with pipeline.ledger_runtime.sessions() as session:
        stored = await session.scalar(
            select(LedgerEntry.canonical).where(LedgerEntry.subject == str(erased_tip))  # type: ignore[arg-type]
        )
    assert stored is not None and ERASED.text.encode() not in stored and b"x-sealed" in stored
    before = received((await trail(pipeline, token, erased_case))["entries"], erased_tip)
    assert before["personal"]["text"] == ERASED.text
    assert before["personal"]["address"] == ERASED.address
    head_before = await signed_head(pipeline, token)

    # Who may erase: an administrator only.
    path = f"/v1/admin/tips/{tracking_no}/erasure"
    assert (await pipeline.intake.post(path)).status_code == 401
    for role in ("auditor", "dispatcher", "hotline_operator", "county_supervisor"):
        refused = await pipeline.intake.post(path, headers=bearer(token, role))
        assert refused.status_code == 403, role
        assert refused.headers["content-type"] == PROBLEM
    unknown = await pipeline.intake.post(
        "/v1/admin/tips/QX20200101-000000/erasure", headers=bearer(token, "admin")
    )
    assert unknown.status_code == 404 and unknown.json()["detail"] == "未找到该受理编号。"

    erased = await pipeline.intake.post(
        path, headers=bearer(token, "admin"), json={"legal_basis": "本人来电要求删除"}
    )
    assert erased.status_code == 201, erased.text
    assert erased.json()["erased_by"] == "test-admin"
    again = await pipeline.intake.post(path, headers=bearer(token, "admin"))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert "已于" in again.json()["detail"]

    # The erasure travels: the ledger records it and destroys the key; dispatch forgets.
    await recorded(pipeline, erased_tip, ERASED_TYPE)
    async with pipeline.ledger_runtime.sessions() as session:
        assert await session.get(TipKey, erased_tip) is None
        assert await session.get(TipKey, kept_tip) is not None

    async def dispatch_forgot() -> bool | None:
        async with pipeline.dispatch_runtime.sessions() as session:
            words = await session.get(TipText, erased_tip)
            case = await session.get(Case, erased_case)
            assert words is not None and case is not None
            forgot = words.text == ERASED_TEXT and words.address is None and case.lat is None
            return forgot or None

    await eventually(dispatch_forgot, within=30, what="dispatch erasing its copies")
    async with pipeline.intake_runtime.sessions() as session:
        tip = await session.get(Tip, erased_tip)
        assert tip is not None and tip.text == ERASED_TEXT and tip.erased_at is not None

    # The trail: the same bytes, every proof still verifies, the data reads 已按规定删除.
    head = await signed_head(pipeline, token)
    entries = (await trail(pipeline, token, erased_case))["entries"]
    after = received(entries, erased_tip)
    assert after["canonical"] == before["canonical"]
    assert set(after["personal"].values()) == {ERASED_TEXT}
    assert set(after["personal"]) >= {"text", "address", "location", "contact"}
    assert ERASED_TYPE in {e["type"] for e in entries}
    for entry in entries:
        leaf = leaf_hash(entry["canonical"].encode())
        proof = [bytes.fromhex(h) for h in entry["inclusion_path"]]
        assert verify_inclusion(leaf, entry["seq"], head.tree_size, proof, head.root_hash)
    other = received((await trail(pipeline, token, kept_case))["entries"], kept_tip)
    assert other["personal"]["text"] == KEPT.text

    # The export verifies offline against the head and the head kept from before the erasure.
    export = await pipeline.ledger.get("/v1/export", headers=bearer(token, "auditor"))
    assert export.status_code == 200, export.text
    key = load_public_key((await pipeline.ledger.get("/v1/public-key")).content)
    report = verify_export(export.content.splitlines(keepends=True), key, earlier=head_before)
    assert report.ok, report.render()
    assert KEPT.text.encode() in export.content  # another tip's data is still readable

    # Nothing of the erased citizen, anywhere the ledger keeps or shows anything…
    haystacks: list[tuple[str, bytes]] = [("the export", export.content)]
    # …and in intake's and dispatch's databases, outboxes included.
    for service in ("ledger", "intake", "dispatch"):
        haystacks += [
            (f"{service} table {table}.{column}", as_bytes(value))
            for table, column, value in await database_values(
                own_settings.database_url_for(service)
            )
        ]
    haystacks.append(("the logs", caplog.text.encode()))
    found = [
        f"{what} in {where}"
        for where, haystack in haystacks
        for what, needle in ERASED.needles().items()
        if needle in haystack
    ]
    assert found == []


async def signed_head(pipeline: Pipeline, token: TokenFactory) -> TreeHead:
    response = await pipeline.ledger.post("/v1/tree-heads", headers=bearer(token, "auditor"))
    assert response.status_code in (200, 201), response.text
    return TreeHead.from_json(response.json())


def erasure_of(tip_id: UUID, now: datetime) -> PersonalDataErased:
    return PersonalDataErased(
        tip_id=tip_id,
        tracking_no="QX1",
        reason="request",
        legal_basis="本人要求",
        erased_at=now,
        erased_by="S1",
    )


async def opened(runtime: Runtime, tip_id: UUID) -> list[dict[str, Any]]:
    """What the ledger opens each of the tip's entries to, in log order."""
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(LedgerEntry.canonical)
            .where(LedgerEntry.subject == str(tip_id))  # type: ignore[arg-type]
            .order_by(LedgerEntry.seq)  # type: ignore[arg-type]
        )
        return await reveal_documents(session, [json.loads(row) for row in rows])


async def test_what_comes_with_or_after_an_erasure_is_sealed_and_forgotten(
    pipeline: Pipeline,
) -> None:
    """In one transaction, a tip's rating before its erasure and a supplement after it; then,
    later, a rating sent again: none can ever be read, and the tip gets no key again."""
    runtime, now = pipeline.ledger_runtime, datetime.now(UTC)
    tip_id = uuid4()

    def tip_event(data: Any) -> tuple[str, CloudEvent]:
        return TIPS, new_event("whistle/intake", str(tip_id), data, now)

    received = TipReceived(
        tip_id=tip_id, tracking_no="QX1", channel="web", text=ERASED.text, received_at=now
    )
    rated = TipRated(
        tip_id=tip_id,
        case_id=uuid4(),
        rating="satisfied",
        comment="王师傅很负责",
        channel="web",
        rated_at=now,
    )
    erased = erasure_of(tip_id, now)
    supplemented = TipSupplemented(
        tip_id=tip_id, channel="wechat", address=ERASED.address, supplemented_at=now
    )
    await record(runtime, [tip_event(received), tip_event(rated), tip_event(erased)])
    await record(runtime, [tip_event(supplemented), tip_event(rated)])

    views = await opened(runtime, tip_id)
    assert [set(view.values()) for view in views] == [{ERASED_TEXT}] * 2 + [set()] + [
        {ERASED_TEXT}
    ] * 2
    async with runtime.sessions() as session:
        assert await session.get(TipKey, tip_id) is None


async def test_an_event_that_cannot_be_keyed_to_its_tip_is_refused_for_the_dead_letters(
    pipeline: Pipeline,
) -> None:
    event = CloudEvent(
        id="e1",
        source="whistle/intake",
        type=TipRated.event_type,
        time=datetime.now(UTC),
        data={"comment": "王师傅很负责"},
    )
    with pytest.raises(PoisonEvent, match="names no tip_id"):
        await record(pipeline.ledger_runtime, [(TIPS, event)])
    now, tip_id = datetime.now(UTC), uuid4()
    elsewhere = new_event("whistle/intake", str(uuid4()), erasure_of(tip_id, now), now)
    with pytest.raises(PoisonEvent, match="its tip id as its subject"):
        await record(pipeline.ledger_runtime, [(TIPS, elsewhere)])


async def test_an_export_in_many_batches_opens_each_batchs_sealed_fields(
    pipeline: Pipeline, token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keys are read batch by batch while the entries stream: batches of three here."""
    monkeypatch.setattr(ledger_api, "EXPORT_BATCH", 3)
    now = datetime.now(UTC)
    tips = [uuid4() for _ in range(7)]
    await record(
        pipeline.ledger_runtime,
        [
            (
                TIPS,
                new_event(
                    "whistle/intake",
                    str(tip_id),
                    TipReceived(
                        tip_id=tip_id,
                        tracking_no=f"QX{n}",
                        channel="web",
                        text=f"第{n}条：{KEPT.text}",
                        received_at=now,
                    ),
                    now,
                ),
            )
            for n, tip_id in enumerate(tips)
        ],
    )
    await signed_head(pipeline, token)
    export = await pipeline.ledger.get("/v1/export", headers=bearer(token, "auditor"))
    assert export.status_code == 200, export.text
    lines = [json.loads(line) for line in export.content.splitlines()[1:]]
    texts = {line["personal"].get("text") for line in lines if "personal" in line}
    assert {f"第{n}条：{KEPT.text}" for n in range(len(tips))} <= texts
    key = load_public_key((await pipeline.ledger.get("/v1/public-key")).content)
    assert verify_export(export.content.splitlines(keepends=True), key).ok
