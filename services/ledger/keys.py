"""Each tip's key in ``ledger_tip_key``, outside the append-only log: created with the tip's
first event that has personal data, destroyed by its erasure (``whistle.personal_data.erased``)
in the transaction that records the erasure. The writer role may insert, read and delete a key,
never change one (migration ledger_0007)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import PersonalDataErased
from services.ledger.models import LedgerEntry, TipKey
from services.ledger.shredding import new_key, reveal, sealed_fields

ERASED = PersonalDataErased.event_type


class TransactionKeys:
    """The keys one recording transaction uses: looked up once per tip, new ones written with
    the transaction's other appends (:meth:`write`)."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}
        self._new: dict[UUID, dict[str, Any]] = {}
        self._erased: set[UUID] = set()

    async def key_for(self, session: AsyncSession, tip_id: UUID, now: datetime) -> bytes:
        """The tip's key, made if it has none. A tip already erased gets a key that is never
        stored: what arrives after its erasure (a late rating, a redelivery) is sealed and
        forgotten in one step."""
        if tip_id in self._erased:
            return new_key()
        if tip_id in self._keys:
            return self._keys[tip_id]
        stored = await session.scalar(select(TipKey.key).where(TipKey.tip_id == tip_id))  # type: ignore[arg-type]
        if stored is not None:
            self._keys[tip_id] = stored
            return stored
        if await session.scalar(select(_erasure_recorded(tip_id))):
            self._erased.add(tip_id)
            return new_key()
        key = new_key()
        self._keys[tip_id] = key
        self._new[tip_id] = {"tip_id": tip_id, "key": key, "created_at": now}
        return key

    async def destroy(self, session: AsyncSession, tip_id: UUID) -> None:
        self._erased.add(tip_id)
        self._keys.pop(tip_id, None)
        if self._new.pop(tip_id, None) is None:
            await session.execute(delete(TipKey).where(TipKey.tip_id == tip_id))  # type: ignore[arg-type]

    def write(self, connection: Connection) -> None:
        if self._new:
            connection.execute(TipKey.__table__.insert(), list(self._new.values()))  # type: ignore[attr-defined]


def _erasure_recorded(tip_id: UUID) -> Any:
    return exists().where(
        LedgerEntry.subject == str(tip_id),  # type: ignore[arg-type]
        LedgerEntry.type == ERASED,  # type: ignore[arg-type]
    )


async def keys_of(session: AsyncSession, tip_ids: Collection[UUID]) -> dict[UUID, bytes]:
    """The keys of those tips that still have one."""
    if not tip_ids:
        return {}
    rows = await session.execute(
        select(TipKey.tip_id, TipKey.key).where(TipKey.tip_id.in_(list(tip_ids)))  # type: ignore[attr-defined]
    )
    return {tip_id: key for tip_id, key in rows}


def tip_of(data: Any) -> UUID | None:
    """The tip a payload's personal fields belong to (its ``tip_id``), if it names one."""
    try:
        return UUID(str(data["tip_id"]))
    except (KeyError, TypeError, ValueError):
        return None


async def reveal_documents(
    session: AsyncSession, documents: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """For each recorded event (its canonical document), its sealed personal fields opened
    with its tip's key, or 已按规定删除 where the key was destroyed; ``{}`` for an event with
    none. One query for the keys of them all."""
    sealed = [
        sealed_fields(str(document.get("type")), document.get("data") or {})
        for document in documents
    ]
    tips = [
        tip_of(document.get("data")) if fields else None
        for document, fields in zip(documents, sealed, strict=True)
    ]
    keys = await keys_of(session, {tip for tip in tips if tip is not None})
    return [
        reveal(
            str(document["type"]),
            document["data"],
            keys.get(tip) if tip is not None else None,
            str(document.get("source")),
            str(document.get("id")),
        )
        if fields
        else {}
        for document, fields, tip in zip(documents, sealed, tips, strict=True)
    ]
