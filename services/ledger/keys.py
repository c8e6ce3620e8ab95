"""Each tip's key in ``ledger_tip_key``, outside the append-only log: created with the tip's
first event that has personal data, destroyed by its erasure (``whistle.personal_data.erased``)
in the transaction that records the erasure. The writer role may insert, read and delete a key,
never change one (migration ledger_0007)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import PersonalDataErased
from services.ledger.models import LedgerEntry, TipKey
from services.ledger.shredding import new_key, reveal, sealed_fields

ERASED = PersonalDataErased.event_type


class TransactionKeys:
    """The keys one recording transaction uses, fetched for all its tips at once
    (:meth:`load`: two queries a transaction, not two a tip); new keys written, destroyed ones
    deleted, with the transaction's other appends (:meth:`write`)."""

    def __init__(self) -> None:
        self._keys: dict[UUID, bytes] = {}
        self._stored: set[UUID] = set()
        self._new: dict[UUID, datetime] = {}
        self._erased: set[UUID] = set()
        self._destroyed: set[UUID] = set()

    async def load(self, session: AsyncSession, tip_ids: Collection[UUID]) -> None:
        """The stored keys of these tips, and which of them were erased before."""
        if not tip_ids:
            return
        self._keys = await keys_of(session, tip_ids)
        self._stored = set(self._keys)
        erased = await session.scalars(
            select(LedgerEntry.subject).where(
                LedgerEntry.subject.in_([str(tip) for tip in tip_ids]),  # type: ignore[union-attr]
                LedgerEntry.type == ERASED,  # type: ignore[arg-type]
            )
        )
        self._erased = {UUID(subject) for subject in erased if subject}

    def key_for(self, tip_id: UUID, now: datetime) -> bytes:
        """The tip's key, made if it has none. A tip already erased gets a key that is never
        stored: what arrives after its erasure (a late rating, a redelivery) is sealed and
        forgotten in one step."""
        if tip_id in self._erased:
            return new_key()
        if tip_id not in self._keys:
            self._keys[tip_id] = new_key()
            self._new[tip_id] = now
        return self._keys[tip_id]

    def destroy(self, tip_id: UUID) -> None:
        self._erased.add(tip_id)
        self._keys.pop(tip_id, None)
        self._new.pop(tip_id, None)
        if tip_id in self._stored:
            self._destroyed.add(tip_id)

    def write(self, connection: Connection) -> None:
        if self._destroyed:
            connection.execute(
                delete(TipKey).where(TipKey.tip_id.in_(list(self._destroyed)))  # type: ignore[attr-defined]
            )
        if self._new:
            connection.execute(
                TipKey.__table__.insert(),  # type: ignore[attr-defined]
                [
                    {"tip_id": tip_id, "key": self._keys[tip_id], "created_at": at}
                    for tip_id, at in self._new.items()
                ],
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
