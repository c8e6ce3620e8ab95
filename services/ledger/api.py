"""The ledger's HTTP API: signed tree heads, proofs, a case's trail, the export, the public key.

Hashes and signatures are lower-case hex. Proofs are RFC 9162 paths, lowest subtree first.
Everything but the latest tree head and the public key needs the ``auditor`` role (the trail
also ``county_supervisor``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from functools import partial
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import String, cast, literal, select, union_all

from services.ledger import store
from services.ledger.export import MEDIA_TYPE, entry_line, header_line
from services.ledger.heads import HeadSigner, TreeHead, public_key_pem
from services.ledger.issuer import issue
from services.ledger.keys import reveal_documents
from services.ledger.merkle import NodeId, consistency_plan, inclusion_plan, leaf_hash
from services.ledger.models import CaseTip, LedgerEntry, LedgerNode, MeetingCase
from services.ledger.shredding import SEALED
from services.runtime.auth import Principal, require_roles
from services.runtime.db import Sessions
from services.runtime.problems import Problem
from services.runtime.service import Runtime, RuntimeDep

router = APIRouter(prefix="/v1", tags=["ledger"])

Auditor = Annotated[Principal, Depends(require_roles("auditor"))]
EXPORT_BATCH = 1000
# Only an entry with a sealed field needs parsing to be opened.
SEALED_MARK = f'"{SEALED}"'.encode()
# Tree sizes are PostgreSQL bigints: a size beyond one is no tree's, and is refused before it
# reaches a query.
MAX_TREE_SIZE = 2**63 - 1


class SignedTreeHead(BaseModel):
    tree_size: int
    root_hash: str = Field(description="hex")
    timestamp: str = Field(description="RFC 3339, UTC, microseconds; signed as written")
    signature: str = Field(description="hex; Ed25519 over the RFC 8785 JSON of the other fields")

    @classmethod
    def of(cls, head: TreeHead) -> SignedTreeHead:
        return cls(**head.to_json())


class TrailEntry(BaseModel):
    seq: int
    type: str
    source: str
    event_id: str
    subject: str | None
    topic: str
    time: datetime
    recorded_at: datetime
    leaf_hash: str = Field(description="RFC 9162 leaf hash of the event's canonical bytes")
    inclusion_path: list[str] | None = Field(
        description="RFC 9162 inclusion proof against tree_head; null for an entry recorded "
        "after it (the next head covers it)"
    )
    event: dict[str, Any]
    canonical: str = Field(
        description="the entry as stored: a JSON string whose UTF-8 bytes are exactly the bytes "
        "leaf_hash is computed over (RFC 8785), for a verifier to hash itself"
    )
    personal: dict[str, Any] = Field(
        default_factory=dict,
        description="the event's personal fields, sealed in canonical, opened with the tip's "
        "key — or 已按规定删除 once the tip was erased; not covered by leaf_hash",
    )


class Trail(BaseModel):
    case_id: UUID
    tree_head: SignedTreeHead | None
    entries: list[TrailEntry]


class InclusionProof(BaseModel):
    seq: int
    tree_size: int
    leaf_hash: str = Field(description="the leaf the tree committed at seq")
    inclusion_path: list[str]


class ConsistencyProof(BaseModel):
    from_size: int = Field(serialization_alias="from")
    to_size: int = Field(serialization_alias="to")
    consistency_path: list[str]


def _signer(runtime: Runtime) -> HeadSigner:
    signer: HeadSigner = runtime.state["signer"]
    return signer


def _invalid(detail: str) -> Problem:
    return Problem(
        422,
        "Invalid request",
        detail,
        type_="https://whistle.example/problems/invalid-request",
    )


def _within_log(size: int, log_size: int) -> None:
    if size > log_size:
        raise Problem(
            404,
            "Not Found",
            f"The log has {log_size} entries; there is no tree of size {size} (yet).",
        )


@router.get("/tree-head", response_model=SignedTreeHead)
async def latest_tree_head(runtime: RuntimeDep) -> SignedTreeHead:
    """The latest signed tree head. Public: anyone may hold the ledger to it."""
    async with runtime.sessions() as session:
        head = await store.latest_head(session)
    if head is None:
        raise Problem(404, "Not Found", "No tree head has been issued yet.")
    return SignedTreeHead.of(head)


@router.get("/tree-heads/{size}", response_model=SignedTreeHead)
async def tree_head_at(
    size: Annotated[int, Path(ge=0, le=MAX_TREE_SIZE)], _: Auditor, runtime: RuntimeDep
) -> SignedTreeHead:
    async with runtime.sessions() as session:
        head = await store.head_at(session, size)
    if head is None:
        raise Problem(404, "Not Found", f"No tree head was issued at size {size}.")
    return SignedTreeHead.of(head)


@router.post("/tree-heads", response_model=SignedTreeHead)
async def issue_tree_head(_: Auditor, runtime: RuntimeDep, response: Response) -> SignedTreeHead:
    """Sign the log as it is now: 201 with a new head, or 200 with the latest one if the log
    has not grown since."""
    head, new = await issue(runtime.sessions, _signer(runtime), runtime.clock)
    response.status_code = 201 if new else 200
    return SignedTreeHead.of(head)


def _readable(runtime: Runtime, principal: Principal, county: str | None) -> bool:
    """Whether an entry of ``county`` (None: it named none, the default county's) is one the
    principal may read: of their counties, or any with ``county:*`` (docs/scale.md)."""
    counties = principal.counties()
    if counties is None:
        return True
    named = runtime.counties.of(county) if runtime.counties else county
    return named is None or named in counties


@router.get("/proofs/inclusion", response_model=InclusionProof)
async def inclusion_proof(
    principal: Auditor,
    runtime: RuntimeDep,
    seq: Annotated[int, Query(ge=0)],
    size: Annotated[int, Query(ge=1)],
) -> InclusionProof:
    """That entry ``seq`` is leaf ``seq`` of the tree of ``size`` entries (RFC 9162 §2.1.3)."""
    if seq >= size:
        raise _invalid(f"Entry {seq} is not in a tree of size {size}: seq must be below size.")
    plan = inclusion_plan(seq, size)
    async with runtime.sessions() as session:
        _within_log(size, await store.log_size(session))
        # One log for all counties (docs/scale.md): another county's entry is not there for a
        # one-county auditor, exactly as another county's case is not for its dispatcher.
        entry = await session.get(LedgerEntry, seq)
        if entry is not None and not _readable(runtime, principal, entry.county):
            raise Problem(404, "未找到记录", f"没有您可查看的序号 {seq} 的记录。")
        nodes = await store.node_hashes(session, plan.nodes() | {NodeId(0, seq)})
    return InclusionProof(
        seq=seq,
        tree_size=size,
        leaf_hash=nodes[NodeId(0, seq)].hex(),
        inclusion_path=[h.hex() for h in plan.hashes(nodes)],
    )


@router.get("/proofs/consistency", response_model=ConsistencyProof)
async def consistency_proof(
    _: Auditor,
    runtime: RuntimeDep,
    from_size: Annotated[int, Query(alias="from", ge=1)],
    to_size: Annotated[int, Query(alias="to", ge=1)],
) -> ConsistencyProof:
    """That the tree of ``to`` entries is the tree of ``from`` with entries appended (§2.1.4)."""
    if from_size > to_size:
        raise _invalid(f"from ({from_size}) must not be larger than to ({to_size}).")
    plan = consistency_plan(from_size, to_size)
    async with runtime.sessions() as session:
        _within_log(to_size, await store.log_size(session))
        [path] = await store.plan_hashes(session, [plan])
    return ConsistencyProof(
        from_size=from_size, to_size=to_size, consistency_path=[h.hex() for h in path]
    )


@router.get("/cases/{case_id}/trail", response_model=Trail)
async def case_trail(
    case_id: UUID,
    principal: Annotated[Principal, Depends(require_roles("auditor", "county_supervisor"))],
    runtime: RuntimeDep,
) -> Trail:
    """Every event of the case, of the tips it was opened for and of the joint meetings
    convened on it (联席会议), in the order they happened,
    each with its inclusion proof against the latest signed head. Another county's case is
    404 to a one-county token."""
    # One list of subjects, so that the lookup stays on the subject index: "subject = case OR
    # subject IN (tips)" makes PostgreSQL scan every entry.
    subjects = union_all(
        select(literal(str(case_id))),
        select(cast(CaseTip.tip_id, String)).where(CaseTip.case_id == case_id),
        # The joint meetings (联席会议) convened on the case, whose events are keyed by meeting.
        select(cast(MeetingCase.meeting_id, String)).where(MeetingCase.case_id == case_id),
    )
    async with runtime.sessions() as session:
        found = (
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.subject.in_(subjects))  # type: ignore[union-attr]
                .order_by(LedgerEntry.event_time, LedgerEntry.seq)  # type: ignore[arg-type]
            )
        ).all()
        # Filtered entry by entry, before anything is opened: a case and its tips are one
        # county's, so another county's case has nothing left and is answered as unknown.
        rows = [row for row in found if _readable(runtime, principal, row.county)]
        if found and not rows:
            raise Problem(404, "未找到案件", f"没有您可查看的案件 {case_id} 的记录。")
        head = await store.latest_head(session)
        size = head.tree_size if head else 0
        covered = [row.seq for row in rows if row.seq < size]
        events = [json.loads(row.canonical) for row in rows]
        personal = await reveal_documents(session, events)
        paths = dict(
            zip(
                covered,
                await store.plan_hashes(session, [inclusion_plan(seq, size) for seq in covered]),
                strict=True,
            )
        )
    return Trail(
        case_id=case_id,
        tree_head=SignedTreeHead.of(head) if head else None,
        entries=[
            TrailEntry(
                seq=row.seq,
                type=row.type,
                source=row.source,
                event_id=row.event_id,
                subject=row.subject,
                topic=row.topic,
                time=row.event_time,
                recorded_at=row.recorded_at,
                # Of the bytes as stored now, so that a changed entry cannot show its old hash.
                leaf_hash=leaf_hash(row.canonical).hex(),
                inclusion_path=[h.hex() for h in paths[row.seq]] if row.seq in paths else None,
                event=event,
                canonical=row.canonical.decode(),
                personal=opened,
            )
            for row, event, opened in zip(rows, events, personal, strict=True)
        ],
    )


@router.get("/export", response_class=StreamingResponse)
async def export(
    principal: Auditor,
    runtime: RuntimeDep,
    from_seq: Annotated[int, Query(ge=0)] = 0,
) -> StreamingResponse:
    """The log from ``from_seq`` to the latest signed head, as JSON Lines (see docs/ledger.md):
    a header with the head, then one line per entry with its canonical bytes and the leaf the
    tree committed. ``whistle ledger verify`` checks it offline. Another county's entries are
    withheld from a one-county token: their leaves only (docs/ledger.md)."""
    async with runtime.sessions() as session:
        head = await store.latest_head(session)
        if head is None:
            raise Problem(404, "Not Found", "No tree head has been issued yet.")
        if from_seq > head.tree_size:
            raise _invalid(
                f"from_seq {from_seq} is beyond the latest signed head (size {head.tree_size})."
            )
        prefix = (await store.frontier(session, from_seq)).hashes
    return StreamingResponse(
        _export_lines(
            runtime.sessions, from_seq, prefix, head, partial(_readable, runtime, principal)
        ),
        media_type=MEDIA_TYPE,
        headers={
            "content-disposition": (
                f'attachment; filename="ledger-{from_seq}-{head.tree_size}.jsonl"'
            )
        },
    )


async def _export_lines(
    sessions: Sessions,
    from_seq: int,
    prefix: list[bytes],
    head: TreeHead,
    readable: Callable[[str | None], bool],
) -> AsyncIterator[bytes]:
    yield header_line(from_seq, prefix, head)
    # Driven by the tree's leaves, so that a position whose entry is gone still shows.
    query = (
        select(LedgerNode.index, LedgerNode.hash, LedgerEntry.canonical, LedgerEntry.county)
        .select_from(LedgerNode)
        .outerjoin(LedgerEntry, LedgerEntry.seq == LedgerNode.index)  # type: ignore[arg-type]
        .where(
            LedgerNode.level == 0,
            LedgerNode.index >= from_seq,  # type: ignore[operator]
            LedgerNode.index < head.tree_size,  # type: ignore[operator]
        )
        .order_by(LedgerNode.index)  # type: ignore[arg-type]
        .execution_options(yield_per=EXPORT_BATCH)
    )
    async with sessions() as session:
        result = await session.stream(query)
        async for rows in result.partitions():
            withheld = [
                canonical is not None and not readable(county) for *_, canonical, county in rows
            ]
            documents = [
                json.loads(canonical) if canonical and SEALED_MARK in canonical and not out else {}
                for (_, _, canonical, _), out in zip(rows, withheld, strict=True)
            ]
            # Opened in the session that reads them, batch by batch: the keys as they are now.
            personal = await reveal_documents(session, documents)
            yield b"".join(
                entry_line(seq, leaf, canonical, opened, withheld=out)
                for (seq, leaf, canonical, _), opened, out in zip(
                    rows, personal, withheld, strict=True
                )
            )


@router.get("/public-key")
async def public_key(runtime: RuntimeDep) -> Response:
    """The Ed25519 key tree heads are signed with (PEM). Public; auditors should keep the copy
    they were given rather than trust this one."""
    pem = public_key_pem(_signer(runtime).public_key())
    return Response(pem, media_type="application/x-pem-file")
