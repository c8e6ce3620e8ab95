"""The recorder: appends each event to the ledger's log, whatever its type, and grows its
Merkle tree. What reaches it is said in ``services/ledger/consumers.py``.

An event's personal fields are sealed under its tip's key before it is canonicalised, so the
log commits to their ciphertext (services/ledger/shredding.py); a tip's erasure
(``whistle.personal_data.erased``) destroys that key in the transaction that records it.

The inbox applies a partition's batch in one transaction and calls the recorder once per event.
Appending needs the log's size and the tree's frontier; they are read once per transaction,
locking the size row so that appends serialise and sequence numbers never gap. The events, and
the KPI facts they carry (services.ledger.projection), are collected, and their entries and tree
nodes made and written just before the transaction commits (``Recorder.flush``, the ledger
subscription's ``before_commit``): the keys of all their tips fetched in two queries, entries
and nodes by COPY, the rest by a few multi-row statements, rather than by several statements
per event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from prometheus_client import Gauge
from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import MeetingConvened
from services.ledger import store
from services.ledger.keys import ERASED, TransactionKeys, tip_of
from services.ledger.merkle import Frontier, canonical_bytes, leaf_hash
from services.ledger.models import CaseTip, LedgerState, MeetingCase
from services.ledger.projection import KpiBatch
from services.ledger.shredding import seal, to_seal
from services.runtime.clock import Clock
from services.runtime.inbox import PoisonEvent
from services.runtime.metrics import after_commit

MEETING_CONVENED = MeetingConvened.event_type

# Where a session keeps the appends of its open transaction.
PENDING = "ledger.pending_appends"

# Set when appends commit (and at start, from the first tree head): with the signed heads'
# gauges (services/ledger/issuer.py) it says how much of the log no signed head covers yet.
TREE_SIZE = Gauge(
    "whistle_ledger_tree_size",
    "Entries in the ledger's log (its Merkle tree's size), as of the last append this process "
    "committed",
)


ENTRY_COLUMNS = (
    "seq",
    "source",
    "event_id",
    "type",
    "subject",
    "topic",
    "event_time",
    "recorded_at",
    "canonical",
    "leaf_hash",
    "county",
)
NODE_COLUMNS = ("level", "index", "hash")
# Built once, like the KPI statements (projection.py).
CASE_TIPS = insert(CaseTip.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
MEETING_CASES = insert(MeetingCase.__table__).on_conflict_do_nothing()  # type: ignore[attr-defined]
SET_SIZE = (
    update(LedgerState)
    .where(LedgerState.id == 1)  # type: ignore[arg-type]
    .values(size=bindparam("size"))
)


@dataclass
class PendingAppends:
    frontier: Frontier
    # The events as they came, with their topic and when: their entries are made at flush,
    # once the keys of all their tips are fetched at once.
    recorded: list[tuple[CloudEvent, str, datetime]] = field(default_factory=list)
    entries: list[tuple[Any, ...]] = field(default_factory=list)  # in ENTRY_COLUMNS order
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    case_tips: list[dict[str, Any]] = field(default_factory=list)
    meeting_cases: list[dict[str, Any]] = field(default_factory=list)
    kpis: KpiBatch = field(default_factory=KpiBatch)
    keys: TransactionKeys = field(default_factory=TransactionKeys)

    async def append(self, session: AsyncSession) -> None:
        """Each recorded event's entry, in order: its personal fields sealed under its tip's
        key, an erasure destroying the key — so an event before the erasure is sealed under
        the key destroyed, one after it under a key never stored."""
        await self.keys.load(
            session,
            {tip for event, _, _ in self.recorded if (tip := _keyed_tip(event)) is not None},
        )
        for event, topic, recorded_at in self.recorded:
            document = event.to_json()
            tip_id = _keyed_tip(event)
            if tip_id is not None and event.type == ERASED:
                self.keys.destroy(tip_id)
            elif tip_id is not None:
                key = self.keys.key_for(tip_id, recorded_at)
                personal = to_seal(event.type, event.data)
                document["data"] = seal(event.data, personal, key, event.source, event.id)
            canonical = canonical_bytes(document)
            leaf = leaf_hash(canonical)
            self.entries.append(
                (
                    self.frontier.size,
                    event.source,
                    event.id,
                    event.type,
                    event.subject,
                    topic,
                    event.time,
                    recorded_at,
                    canonical,
                    leaf,
                    event.county,
                )
            )
            self.nodes.extend(
                (level, index, hash_) for (level, index), hash_ in self.frontier.append(leaf)
            )

    async def copy(self, session: AsyncSession) -> None:
        """The entries and nodes, by COPY on the transaction's own connection: a tenth of the
        cost of an INSERT of as many rows (bench: ``python -m bench ledger``)."""
        connection = await session.connection()
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.copy_records_to_table(
            "ledger_entry", records=self.entries, columns=ENTRY_COLUMNS
        )
        await driver.copy_records_to_table("ledger_node", records=self.nodes, columns=NODE_COLUMNS)

    def write(self, connection: Connection) -> None:
        """Everything else, once the entries are in."""
        self.keys.write(connection)
        if self.case_tips:
            connection.execute(CASE_TIPS, self.case_tips)
        if self.meeting_cases:
            connection.execute(MEETING_CASES, self.meeting_cases)
        connection.execute(SET_SIZE, {"size": self.frontier.size})
        self.kpis.write(connection)


def _needs_key(event: CloudEvent) -> bool:
    """Whether the event has personal data to seal, or is a tip's erasure."""
    return event.type == ERASED or bool(to_seal(event.type, event.data))


def _keyed_tip(event: CloudEvent) -> UUID | None:
    """The tip whose key the event needs, if it needs one (the recorder refused an event that
    needs one and names no tip)."""
    return tip_of(event.data) if _needs_key(event) else None


class Recorder:
    """Collects a transaction's appends; :meth:`flush` writes them before it commits."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    async def flush(self, session: AsyncSession) -> None:
        """Write what this transaction appended (the inbox calls it just before committing)."""
        pending: PendingAppends | None = session.info.pop(PENDING, None)
        if pending is not None:
            await pending.append(session)
            await pending.copy(session)
            await session.run_sync(lambda sync: pending.write(sync.connection()))
            size = pending.frontier.size
            after_commit(session, lambda: TREE_SIZE.set(size))

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        # Refused here, one event at a time, so that the inbox parks this one alone.
        if _needs_key(event) and tip_of(event.data) is None:
            raise PoisonEvent(f"{event.type} names no tip_id, whose key its data needs")
        if event.type == ERASED and event.subject != str(tip_of(event.data)):
            # Later events find a tip's erasure by the entry's subject (keys.py).
            raise PoisonEvent(f"{event.type} must have its tip id as its subject")
        pending = await _pending(session)
        pending.recorded.append((event, topic, self._clock()))
        case_id, tip_id = event.data.get("case_id"), event.data.get("tip_id")
        if case_id and tip_id:
            pending.case_tips.append({"tip_id": UUID(tip_id), "case_id": UUID(case_id)})
        if event.type == MEETING_CONVENED:
            # A meeting's events are keyed by the meeting: each of its cases' trails shows them.
            meeting_id = UUID(event.data["meeting_id"])
            pending.meeting_cases.extend(
                {"meeting_id": meeting_id, "case_id": UUID(c)} for c in event.data["case_ids"]
            )
        pending.kpis.observe(event)


async def _pending(session: AsyncSession) -> PendingAppends:
    pending: PendingAppends | None = session.info.get(PENDING)
    if pending is None:
        size = await session.scalar(
            select(LedgerState.size).where(LedgerState.id == 1).with_for_update()  # type: ignore[arg-type]
        )
        if size is None:
            raise RuntimeError("ledger_state is missing its row; run the ledger migrations")
        pending = PendingAppends(await store.frontier(session, size))
        session.info[PENDING] = pending
    return pending
