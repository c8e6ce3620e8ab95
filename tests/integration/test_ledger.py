"""The ledger in process on servers of its own: signed heads, proofs, trail, export, and what
a superuser's tampering with ``ledger_entry`` looks like to the API and the offline verifier.

The ledger gets its own PostgreSQL and broker because these tests rewrite its tables behind
its back, and because it consumes every topic: on the shared broker it would also record
whatever the other tests publish.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from contracts.envelope import CloudEvent, new_event
from contracts.events import CaseTriageRequired, Deadline, DeadlinesSet
from contracts.topics import CASES, DEADLINES
from services.launcher.cli import main
from services.ledger.app import create_app
from services.ledger.heads import TreeHead, load_public_key, verify_head
from services.ledger.merkle import (
    canonical_bytes,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from services.ledger.models import LedgerEntry
from services.ledger.recorder import Recorder
from services.ledger.store import log_size
from services.ledger.verify import verify_export
from services.runtime.kafka import create_producer
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import _in_process
from tests.support.infra import Infra, embedded_servers, eventually, prepared_on
from tests.support.tamper import superuser_connection

PROBLEM = "application/problem+json"
CASES_SEEDED = 20  # three entries each: the log starts with entries 0–59
TARGET = 41


@pytest.fixture(scope="module")
def ledger_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("ledger-servers")) as servers:
        yield servers


@pytest.fixture(scope="module")
async def ledger_settings(settings: Settings, ledger_servers: Infra) -> Settings:
    """The session's settings (home, keys) pointed at the ledger's own servers; heads are
    signed at start and on demand only (the periodic issuer has a test of its own)."""
    return await prepared_on(
        ledger_servers, settings, ("ledger",), ledger_tree_head_interval_seconds=3600
    )


@dataclass(frozen=True)
class Ledger:
    client: httpx.AsyncClient
    runtime: Runtime
    # The case each seeded entry belongs to, by sequence number.
    case_of: dict[int, UUID]


async def record(runtime: Runtime, events: list[tuple[str, CloudEvent]]) -> None:
    """Append events as the inbox does: many in one transaction."""
    recorder = Recorder(runtime.clock)
    async with runtime.transaction() as session:
        for topic, event in events:
            await recorder(session, event, topic)
        await recorder.flush(session)


def case_events(case_id: UUID, n: int) -> list[tuple[str, CloudEvent]]:
    now = datetime.now(UTC)
    tip_id = uuid4()
    triage = CaseTriageRequired(
        case_id=case_id,
        tip_id=tip_id,
        queue="county",
        reason=f"第{n}件：无法定位",
        catalogue_version="v1",
    )
    deadlines = DeadlinesSet(
        case_id=case_id,
        policy_id="P-GENERAL",
        urgency="general",
        deadlines=[Deadline(kind="resolution", due_at=now, warn_at=now)],
    )
    return [
        (CASES, new_event("whistle/dispatch", str(case_id), triage, now)),
        (CASES, new_event("whistle/dispatch", str(case_id), triage, now)),
        (DEADLINES, new_event("whistle/escalation", str(case_id), deadlines, now)),
    ]


@pytest.fixture(scope="module")
async def ledger(ledger_settings: Settings) -> AsyncIterator[Ledger]:
    async for client, runtime in _in_process(create_app(ledger_settings)):
        case_of: dict[int, UUID] = {}
        for n in range(CASES_SEEDED):
            case_id = uuid4()
            events = case_events(case_id, n)
            case_of.update({len(case_of) + i: case_id for i in range(len(events))})
            await record(runtime, events)
        yield Ledger(client, runtime, case_of)


def auth(token: TokenFactory, role: str = "auditor") -> dict[str, str]:
    return {"authorization": f"Bearer {token(role)}"}


async def signed_head(ledger: Ledger, token: TokenFactory) -> TreeHead:
    """A head covering the whole log as it is now, as an auditor would ask for and keep."""
    response = await ledger.client.post("/v1/tree-heads", headers=auth(token))
    assert response.status_code in (200, 201), response.text
    return TreeHead.from_json(response.json())


async def size_of(ledger: Ledger) -> int:
    async with ledger.runtime.sessions() as session:
        return await log_size(session)


def proves(entry: dict[str, Any], head: TreeHead) -> bool:
    """An auditor's check of a trail entry: hash the event shown, verify it against the head."""
    if entry["inclusion_path"] is None:
        return False
    leaf = leaf_hash(canonical_bytes(entry["event"]))
    path = [bytes.fromhex(h) for h in entry["inclusion_path"]]
    return verify_inclusion(leaf, entry["seq"], head.tree_size, path, head.root_hash)


async def public_key(ledger: Ledger) -> Ed25519PublicKey:
    return load_public_key((await ledger.client.get("/v1/public-key")).content)


async def export_lines(ledger: Ledger, token: TokenFactory, from_seq: int = 0) -> list[bytes]:
    response = await ledger.client.get(
        "/v1/export", params={"from_seq": from_seq}, headers=auth(token)
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return response.content.splitlines(keepends=True)


async def test_the_latest_head_and_the_key_are_public_and_the_head_verifies(
    ledger: Ledger, token: TokenFactory, ledger_settings: Settings
) -> None:
    kept = await signed_head(ledger, token)
    response = await ledger.client.get("/v1/tree-head")
    assert response.status_code == 200
    head = TreeHead.from_json(response.json())
    assert head == kept and head.tree_size == await size_of(ledger)
    pem = (await ledger.client.get("/v1/public-key")).content
    assert pem == ledger_settings.ledger_public_key_path.read_bytes()
    assert verify_head(head, load_public_key(pem))


async def test_a_head_is_issued_on_demand_only_when_the_log_grew(
    ledger: Ledger, token: TokenFactory
) -> None:
    current = await signed_head(ledger, token)
    again = await ledger.client.post("/v1/tree-heads", headers=auth(token))
    assert again.status_code == 200 and TreeHead.from_json(again.json()) == current
    await record(ledger.runtime, case_events(uuid4(), 99))
    grown = await ledger.client.post("/v1/tree-heads", headers=auth(token))
    assert grown.status_code == 201
    assert grown.json()["tree_size"] == current.tree_size + 3
    stored = await ledger.client.get(f"/v1/tree-heads/{current.tree_size}", headers=auth(token))
    assert TreeHead.from_json(stored.json()) == current
    missing = await ledger.client.get("/v1/tree-heads/100000", headers=auth(token))
    assert missing.status_code == 404 and missing.headers["content-type"] == PROBLEM
    assert "No tree head was issued at size 100000" in missing.json()["detail"]
    # Found by fuzzing (tests/integration/test_fuzzing.py): beyond a bigint, PostgreSQL
    # refused the argument, 500.
    largest = await ledger.client.get(f"/v1/tree-heads/{2**63 - 1}", headers=auth(token))
    assert largest.status_code == 404 and largest.headers["content-type"] == PROBLEM
    beyond = await ledger.client.get(f"/v1/tree-heads/{2**63}", headers=auth(token))
    assert beyond.status_code == 422 and beyond.headers["content-type"] == PROBLEM


async def test_events_consumed_from_kafka_are_recorded_and_proved(
    ledger: Ledger, token: TokenFactory, ledger_servers: Infra
) -> None:
    case_id = uuid4()
    producer = create_producer(ledger_servers.bootstrap, client_id="test", enable_idempotence=False)
    await producer.start()
    try:
        for topic, event in case_events(case_id, 7):
            await producer.send_and_wait(topic, event.to_bytes(), key=str(case_id).encode())
    finally:
        await producer.stop()

    async def recorded() -> list[dict[str, Any]] | None:
        trail = (await ledger.client.get(f"/v1/cases/{case_id}/trail", headers=auth(token))).json()
        entries: list[dict[str, Any]] = trail["entries"]
        return entries if len(entries) == 3 else None

    await eventually(recorded, what="the consumed events in the trail")
    head = await signed_head(ledger, token)
    trail = (await ledger.client.get(f"/v1/cases/{case_id}/trail", headers=auth(token))).json()
    assert TreeHead.from_json(trail["tree_head"]) == head
    assert all(proves(entry, head) for entry in trail["entries"])


async def test_heads_are_signed_periodically_while_the_log_grows(
    ledger: Ledger, token: TokenFactory, ledger_settings: Settings
) -> None:
    """A second ledger instance that signs every 0.1 s: the module's own only signs on
    demand, so that the other tests know which head the trail is proved against."""
    before = await signed_head(ledger, token)
    often = ledger_settings.model_copy(update={"ledger_tree_head_interval_seconds": 0.1})
    async for client, _ in _in_process(create_app(often)):
        await record(ledger.runtime, case_events(uuid4(), 5))
        head = await eventually(
            partial(latest_head_at, client, before.tree_size + 3),
            what="a head signed without being asked for",
        )
        assert verify_head(head, await public_key(ledger))


async def latest_head_at(client: httpx.AsyncClient, size: int) -> TreeHead | None:
    head = TreeHead.from_json((await client.get("/v1/tree-head")).json())
    return head if head.tree_size == size else None


async def test_every_inclusion_proof_verifies_and_bad_requests_get_problems(
    ledger: Ledger, token: TokenFactory
) -> None:
    head = await signed_head(ledger, token)
    async with ledger.runtime.sessions() as session:
        canonical = dict(
            (await session.execute(select(LedgerEntry.seq, LedgerEntry.canonical))).all()
        )
    for seq in range(head.tree_size):
        response = await ledger.client.get(
            "/v1/proofs/inclusion", params={"seq": seq, "size": head.tree_size}, headers=auth(token)
        )
        proof = response.json()
        assert proof["leaf_hash"] == leaf_hash(canonical[seq]).hex()
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        assert verify_inclusion(
            leaf_hash(canonical[seq]), seq, head.tree_size, path, head.root_hash
        )

    size = await size_of(ledger)
    for params, status, detail in [
        ({"seq": 5, "size": 5}, 422, "seq must be below size"),
        ({"seq": 0, "size": size + 1}, 404, f"The log has {size} entries"),
        ({"seq": -1, "size": 5}, 422, None),
        ({"seq": 0}, 422, None),
    ]:
        response = await ledger.client.get(
            "/v1/proofs/inclusion", params=params, headers=auth(token)
        )
        assert response.status_code == status, params
        assert response.headers["content-type"] == PROBLEM
        if detail:
            assert detail in response.json()["detail"]


async def test_consistency_proofs_link_every_earlier_head_to_the_latest(
    ledger: Ledger, token: TokenFactory
) -> None:
    first = await signed_head(ledger, token)
    await record(ledger.runtime, case_events(uuid4(), 98))
    latest = await signed_head(ledger, token)
    for old in range(1, latest.tree_size + 1):
        response = await ledger.client.get(
            "/v1/proofs/consistency",
            params={"from": old, "to": latest.tree_size},
            headers=auth(token),
        )
        assert response.status_code == 200
        body = response.json()
        assert (body["from"], body["to"]) == (old, latest.tree_size)
        if old == first.tree_size:
            path = [bytes.fromhex(h) for h in body["consistency_path"]]
            assert verify_consistency(
                old, latest.tree_size, first.root_hash, latest.root_hash, path
            )
            assert not verify_consistency(
                old, latest.tree_size, latest.root_hash, latest.root_hash, path
            )
    size = await size_of(ledger)
    for params, status, detail in [
        ({"from": 5, "to": 4}, 422, "must not be larger than"),
        ({"from": 1, "to": size + 1}, 404, f"The log has {size} entries"),
        ({"from": 0, "to": 4}, 422, None),
    ]:
        response = await ledger.client.get(
            "/v1/proofs/consistency", params=params, headers=auth(token)
        )
        assert response.status_code == status, params
        assert response.headers["content-type"] == PROBLEM
        if detail:
            assert detail in response.json()["detail"]


async def test_a_trail_carries_a_proof_for_each_entry_the_latest_head_covers(
    ledger: Ledger, token: TokenFactory
) -> None:
    case_id = uuid4()
    await record(ledger.runtime, case_events(case_id, 97)[:2])
    head = await signed_head(ledger, token)
    await record(ledger.runtime, case_events(case_id, 97)[2:])
    trail = (await ledger.client.get(f"/v1/cases/{case_id}/trail", headers=auth(token))).json()
    assert TreeHead.from_json(trail["tree_head"]) == head
    first, second, late = trail["entries"]
    assert proves(first, head) and proves(second, head)
    assert late["seq"] == head.tree_size and late["inclusion_path"] is None
    assert late["leaf_hash"] == leaf_hash(canonical_bytes(late["event"])).hex()


async def test_an_export_verifies_offline_whole_or_from_a_sequence_number(
    ledger: Ledger, token: TokenFactory
) -> None:
    kept = await signed_head(ledger, token)
    await record(ledger.runtime, case_events(uuid4(), 96))
    head = await signed_head(ledger, token)
    key = await public_key(ledger)
    whole = await export_lines(ledger, token)
    assert len(whole) == 1 + head.tree_size
    report = verify_export(whole, key, earlier=kept)
    assert report.ok, report.render()
    assert report.head == head
    partial = await export_lines(ledger, token, from_seq=kept.tree_size)
    assert len(partial) == 1 + head.tree_size - kept.tree_size
    assert verify_export(partial, key, earlier=kept).ok
    beyond = await ledger.client.get(
        "/v1/export", params={"from_seq": head.tree_size + 1}, headers=auth(token)
    )
    assert beyond.status_code == 422 and "beyond the latest signed head" in beyond.json()["detail"]


UNRECORDED_CASE = UUID("5e0c1d2a-0000-4000-8000-000000000001")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v1/tree-heads/0", {"auditor"}),  # issued at start, on the empty log
        ("POST", "/v1/tree-heads", {"auditor"}),
        ("GET", "/v1/proofs/inclusion?seq=0&size=1", {"auditor"}),
        ("GET", "/v1/proofs/consistency?from=1&to=2", {"auditor"}),
        ("GET", "/v1/export", {"auditor"}),
        # A case no test records: the same id on every run (pytest-xdist's workers must
        # collect the same test names).
        ("GET", f"/v1/cases/{UNRECORDED_CASE}/trail", {"auditor", "county_supervisor"}),
    ],
)
async def test_who_may_call_what(
    ledger: Ledger, token: TokenFactory, method: str, path: str, allowed: set[str]
) -> None:
    nobody = await ledger.client.request(method, path)
    assert nobody.status_code == 401 and nobody.headers["content-type"] == PROBLEM
    for role in ("auditor", "county_supervisor", "dispatcher"):
        response = await ledger.client.request(method, path, headers=auth(token, role))
        if role in allowed:
            assert response.status_code in (200, 201), (role, response.text)
        else:
            assert response.status_code == 403, role
            assert response.headers["content-type"] == PROBLEM


# --- tampering, as a superuser would: triggers off, rows rewritten in place ---------------


@pytest.fixture
async def superuser(ledger: Ledger, ledger_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    async with superuser_connection(ledger_settings.database_url_for("ledger")) as conn:
        yield conn


def forged(canonical: bytes) -> bytes:
    """The entry with its reason changed, canonical again, as a careful forger would write it."""
    event = json.loads(canonical)
    event["data"]["reason"] = "已现场处置"
    event["id"] = str(uuid4())
    return canonical_bytes(event)


Tamper = Callable[[asyncpg.Connection], Awaitable[None]]


async def _alter(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow("SELECT canonical FROM ledger_entry WHERE seq = $1", TARGET)
    await conn.execute(
        "UPDATE ledger_entry SET canonical = $2 WHERE seq = $1", TARGET, forged(row["canonical"])
    )


async def _alter_with_its_hash(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow("SELECT canonical FROM ledger_entry WHERE seq = $1", TARGET)
    new = forged(row["canonical"])
    await conn.execute(
        "UPDATE ledger_entry SET canonical = $2, leaf_hash = $3 WHERE seq = $1",
        TARGET,
        new,
        leaf_hash(new),
    )


async def _delete(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM ledger_entry WHERE seq = $1", TARGET)


async def _delete_and_renumber(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM ledger_entry WHERE seq = $1", TARGET)
    # Through negative numbers, so that no two rows share a sequence number on the way.
    await conn.execute("UPDATE ledger_entry SET seq = -seq WHERE seq > $1", TARGET)
    await conn.execute("UPDATE ledger_entry SET seq = -seq - 1 WHERE seq < 0")


async def _insert_and_renumber(conn: asyncpg.Connection) -> None:
    row = await conn.fetchrow("SELECT * FROM ledger_entry WHERE seq = $1", TARGET)
    await conn.execute("UPDATE ledger_entry SET seq = -seq - 1 WHERE seq >= $1", TARGET)
    await conn.execute("UPDATE ledger_entry SET seq = -seq WHERE seq < 0")
    new = forged(row["canonical"])
    values = {**dict(row), "event_id": json.loads(new)["id"], "canonical": new}
    values["leaf_hash"] = leaf_hash(new)
    columns = ", ".join(values)
    marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
    await conn.execute(f"INSERT INTO ledger_entry ({columns}) VALUES ({marks})", *values.values())


async def _swap(conn: asyncpg.Connection) -> None:
    await conn.execute("UPDATE ledger_entry SET seq = -1 WHERE seq = $1", TARGET)
    await conn.execute("UPDATE ledger_entry SET seq = $1 WHERE seq = $2", TARGET, TARGET + 1)
    await conn.execute("UPDATE ledger_entry SET seq = $1 WHERE seq = -1", TARGET + 1)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger_entry SET type = 'x' WHERE seq = 0",
        "DELETE FROM ledger_entry WHERE seq = 0",
        "UPDATE ledger_node SET hash = '\\x00' WHERE level = 0 AND index = 0",
        "DELETE FROM tree_head",
        "TRUNCATE ledger_entry",
        "ALTER TABLE ledger_entry DISABLE TRIGGER USER",
        "DROP TRIGGER ledger_entry_append_only ON ledger_entry",
        # A tip's key may be made and destroyed, never replaced (migration ledger_0007).
        "UPDATE ledger_tip_key SET key = '\\x00'",
    ],
)
async def test_the_service_itself_may_not_change_the_record(ledger: Ledger, statement: str) -> None:
    """Privileges, before the triggers: the service works as a role that owns nothing."""
    async with ledger.runtime.sessions() as session:
        assert await session.scalar(text("SELECT current_user")) == "whistle_ledger_writer"
        with pytest.raises(DBAPIError, match=r"permission denied|must be owner"):
            await session.execute(text(statement))


@pytest.mark.parametrize(
    ("tamper", "named"),
    [
        (_alter, {("altered", TARGET)}),
        (_alter_with_its_hash, {("altered", TARGET)}),
        (_delete, {("removed", TARGET)}),
        (_delete_and_renumber, {("removed", TARGET), ("moved", TARGET)}),
        (_insert_and_renumber, {("inserted", TARGET), ("moved", TARGET + 1)}),
        (_swap, {("moved", TARGET)}),
    ],
)
async def test_tampering_with_an_entry_is_named_offline_and_breaks_the_apis_proofs(
    ledger: Ledger,
    token: TokenFactory,
    superuser: asyncpg.Connection,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    tamper: Tamper,
    named: set[tuple[str, int]],
) -> None:
    kept = await signed_head(ledger, token)
    kept_file = tmp_path / "head.json"
    kept_file.write_text(json.dumps(kept.to_json()))
    key_file = tmp_path / "ledger.pub.pem"
    key_file.write_bytes((await ledger.client.get("/v1/public-key")).content)
    case_id = ledger.case_of[TARGET]
    before = (await ledger.client.get(f"/v1/cases/{case_id}/trail", headers=auth(token))).json()
    assert all(proves(entry, kept) for entry in before["entries"])

    async with superuser.transaction():
        await superuser.execute("SET LOCAL session_replication_role = replica")
        await tamper(superuser)

    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(await export_lines(ledger, token)))
    code = main(
        ["ledger", "verify", str(export), "--head", str(kept_file), "--public-key", str(key_file)]
    )
    output = capsys.readouterr().out
    assert code == 1, output
    assert f"序号 {TARGET}" in output
    key = load_public_key(key_file.read_bytes())
    report = verify_export(export.read_bytes().splitlines(), key, kept)
    assert {(f.kind, f.seq) for f in report.findings} == named, report.render()

    if tamper is _delete:
        # Nothing is left at that position to prove; the tree still holds what was committed
        # there, and the export is what shows the gap.
        trail = (await ledger.client.get(f"/v1/cases/{case_id}/trail", headers=auth(token))).json()
        assert TARGET not in [entry["seq"] for entry in trail["entries"]]
    else:
        entry = await entry_now_at(ledger, token, TARGET)
        assert not proves(entry, kept)


async def entry_now_at(ledger: Ledger, token: TokenFactory, seq: int) -> dict[str, Any]:
    """The trail entry the API shows at ``seq``, from the trail of the case it now belongs to."""
    async with ledger.runtime.sessions() as session:
        subject = await session.scalar(select(LedgerEntry.subject).where(LedgerEntry.seq == seq))
    trail = (await ledger.client.get(f"/v1/cases/{subject}/trail", headers=auth(token))).json()
    [entry] = [entry for entry in trail["entries"] if entry["seq"] == seq]
    return dict(entry)
