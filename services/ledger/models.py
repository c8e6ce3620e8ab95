"""The ledger's tables: append-only entries, the Merkle tree over them, signed tree heads, the
log's size, and which tips belong to a case."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    LargeBinary,
    SmallInteger,
    String,
    UniqueConstraint,
)
from sqlmodel import Field, SQLModel


class LedgerEntry(SQLModel, table=True):
    __tablename__ = "ledger_entry"
    __table_args__ = (UniqueConstraint("source", "event_id"),)

    # Gap-free, 0-based: the entry's leaf index in the Merkle tree.
    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    source: str
    event_id: str
    type: str
    subject: str | None = Field(default=None, sa_column=Column(String, index=True))
    topic: str
    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    recorded_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    canonical: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    leaf_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerNode(SQLModel, table=True):
    """The hash of a perfect subtree (see services.ledger.merkle.NodeId), level 0 the leaves.

    This is what the log commits to: roots and proofs are computed from these rows alone,
    written in the transaction that appends the entry completing them, and never changed.
    """

    __tablename__ = "ledger_node"

    level: int = Field(sa_column=Column(SmallInteger, primary_key=True, autoincrement=False))
    index: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class StoredTreeHead(SQLModel, table=True):
    """A signed tree head (services.ledger.heads.TreeHead); at most one per size."""

    __tablename__ = "tree_head"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    issued_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    signature: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LedgerState(SQLModel, table=True):
    """One row holding the log's size; locking it serialises appends so numbers never gap."""

    __tablename__ = "ledger_state"

    id: int = Field(default=1, primary_key=True)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))


class CaseTip(SQLModel, table=True):
    __tablename__ = "ledger_case_tip"

    tip_id: UUID = Field(primary_key=True)
    case_id: UUID = Field(index=True)
