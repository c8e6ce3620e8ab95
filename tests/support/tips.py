"""Feeding dispatch a tip the way intake does (through the outbox and the broker), reading
back what dispatch decided, and acting on its cases over HTTP as a role would."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
from aiokafka import AIOKafkaConsumer
from sqlalchemy import select
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import TipReceived
from contracts.topics import TIPS
from services.dispatch.models import Case, TipText
from services.runtime.outbox import OutboxMessage, stage
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.support.infra import eventually


async def send_tip(
    runtime: Runtime, text: str, grid_id: str, hint: str | None = None, county: str | None = None
) -> UUID:
    """Publish a ``TipReceived`` on intake's topic, in ``county`` as intake would name it
    (None: the default); dispatch (in the same test) consumes it."""
    tip_id = uuid7()
    now = datetime.now(UTC)
    tip = TipReceived(
        tip_id=tip_id,
        tracking_no=f"T{tip_id.hex[:10]}",
        channel="grid",
        text=text,
        grid_id=grid_id,
        category_hint=hint,
        received_at=now,
    )
    async with runtime.transaction() as session:
        stage(session, TIPS, new_event("whistle/intake", str(tip_id), tip, now, county))
    return tip_id


async def waiting_case(
    runtime: Runtime,
    township: str,
    text: str,
    *,
    county: str = "140999",
    queue: str | None = None,
) -> UUID:
    """A case of ``county`` waiting in ``township``'s triage queue (or in ``queue``), with the
    citizen's ``text``, as dispatch keeps one that routing left to a person."""
    now = datetime.now(UTC)
    case = Case(
        county=county,
        id=uuid7(),
        tip_id=uuid7(),
        status="triage",
        township_code=township,
        urgency="general",
        queue=queue or f"township:{township}",
        catalogue_version="test",
        routing={"rule": "low_confidence", "explanation": ["待调度员人工分拨"]},
        created_at=now - timedelta(minutes=30),
        updated_at=now,
    )
    async with runtime.transaction() as session:
        session.add(case)
        session.add(TipText(tip_id=case.tip_id, text=text, channel="web", received_at=now))
    return case.id


async def case_of(runtime: Runtime, tip_id: UUID) -> Case:
    async def probe() -> Case | None:
        async with runtime.sessions() as session:
            return await session.scalar(select(Case).where(Case.tip_id == tip_id))  # type: ignore[arg-type]

    return await eventually(probe, what=f"a case for tip {tip_id}")


async def case_events(runtime: Runtime, case_id: UUID) -> list[dict[str, Any]]:
    """The events dispatch staged for a case, in order."""
    async with runtime.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.event)
            .where(OutboxMessage.key == str(case_id))  # type: ignore[arg-type]
            .order_by(OutboxMessage.id)  # type: ignore[arg-type]
        )
        return list(rows.all())


async def published(bootstrap: str, topic: str, key: str, event_type: str) -> dict[str, Any]:
    """The first record on ``topic`` with ``key`` and ``event_type``, as the broker has it."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    try:

        async def probe() -> dict[str, Any] | None:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    if record.key == key.encode() and event["type"] == event_type:
                        return event
            return None

        return await eventually(probe, what=f"{event_type} for {key} on {topic}")
    finally:
        await consumer.stop()


# A staff member of the sample county holding a 执法证 valid until 2029-09-16 (宋晓丽, of
# 城关镇's urban-management squad): steps on the ground of a penalty matter need such an officer.
OFFICER = "S0089"


def bearer(
    token: TokenFactory, role: str, *scopes: str, subject: str | None = None
) -> dict[str, str]:
    """The headers of a caller holding ``role`` with ``scopes`` (as ``subject`` if given)."""
    return {"authorization": f"Bearer {token(role, *scopes, subject=subject)}"}


async def act(
    client: httpx.AsyncClient,
    case_id: UUID,
    action: str,
    headers: dict[str, str],
    body: dict[str, Any] | None = None,
) -> httpx.Response:
    """POST ``action`` on the case at the version it now has (as the caller reads it)."""
    seen = await client.get(f"/v1/cases/{case_id}", headers=headers)
    etag = seen.headers.get("etag", '"1"')
    return await client.post(
        f"/v1/cases/{case_id}/{action}", json=body, headers={**headers, "If-Match": etag}
    )
