"""The ledger's tree and heads in PostgreSQL: what the recorder and views read and write.

The Merkle algorithms (services.ledger.merkle) work on a mapping of stored node hashes; this
module fetches exactly the nodes a plan needs, in one query.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.ledger.heads import TreeHead, format_timestamp
from services.ledger.merkle import Frontier, NodeId, Plan, root_plan
from services.ledger.models import LedgerNode, LedgerState, StoredTreeHead


async def log_size(session: AsyncSession) -> int:
    size = await session.scalar(select(LedgerState.size).where(LedgerState.id == 1))  # type: ignore[arg-type]
    if size is None:
        raise RuntimeError("ledger_state is missing its row; run the ledger migrations")
    return int(size)


async def node_hashes(session: AsyncSession, ids: Collection[NodeId]) -> dict[NodeId, bytes]:
    if not ids:
        return {}
    rows = await session.execute(
        select(LedgerNode.level, LedgerNode.index, LedgerNode.hash).where(
            tuple_(LedgerNode.level, LedgerNode.index).in_(list(ids))
        )
    )
    return {NodeId(level, index): hash_ for level, index, hash_ in rows}


async def plan_hashes(session: AsyncSession, plans: Iterable[Plan]) -> list[list[bytes]]:
    """The hashes of several plans (a trail's proofs) from one fetch of their nodes."""
    plans = list(plans)
    nodes = await node_hashes(session, set().union(*(plan.nodes() for plan in plans)))
    return [plan.hashes(nodes) for plan in plans]


async def frontier(session: AsyncSession, size: int) -> Frontier:
    ids = Frontier.node_ids(size)
    nodes = await node_hashes(session, ids)
    return Frontier(size, (nodes[node] for node in ids))


def _head(row: StoredTreeHead) -> TreeHead:
    return TreeHead(
        tree_size=row.tree_size,
        root_hash=row.root_hash,
        timestamp=format_timestamp(row.issued_at),
        signature=row.signature,
    )


async def latest_head(session: AsyncSession) -> TreeHead | None:
    row = await session.scalar(
        select(StoredTreeHead).order_by(StoredTreeHead.tree_size.desc()).limit(1)  # type: ignore[attr-defined]
    )
    return _head(row) if row else None


async def head_at(session: AsyncSession, size: int) -> TreeHead | None:
    row = await session.get(StoredTreeHead, size)
    return _head(row) if row else None


async def store_head(session: AsyncSession, head: TreeHead) -> bool:
    """Keep a signed head; False if one for that size was stored first (by another replica)."""
    inserted = await session.execute(
        insert(StoredTreeHead)
        .values(
            tree_size=head.tree_size,
            root_hash=head.root_hash,
            issued_at=head.issued_at,
            signature=head.signature,
        )
        .on_conflict_do_nothing()
        .returning(StoredTreeHead.tree_size)
    )
    return inserted.first() is not None


async def current_root(session: AsyncSession) -> tuple[int, bytes]:
    """The log's size and root as committed now."""
    size = await log_size(session)
    [root] = (await plan_hashes(session, [root_plan(size)]))[0]
    return size, root
