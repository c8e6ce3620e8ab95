"""The relay is woken after a commit only when the transaction staged an event: a wake-up costs
it a transaction of its own, and most of intake's transactions (rate limits) stage nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import TipFollowUpUnreachable
from services.runtime.outbox import OutboxMessage, stage, staged

NOW = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def test_a_session_has_something_to_publish_only_once_an_event_is_staged() -> None:
    session = AsyncSession()
    assert not staged(session)
    tip_id = uuid4()
    data = TipFollowUpUnreachable(
        tip_id=tip_id,
        case_id=uuid4(),
        channel="hotline",
        call_id="call-1",
        recorded_by="operator",
        attempted_at=NOW,
    )
    event = new_event("whistle/intake", str(tip_id), data, NOW)
    stage(session, "intake.tips.v1", event)
    assert staged(session)
    assert [type(obj) for obj in session.new] == [OutboxMessage]
    assert not staged(AsyncSession())  # each session says so for itself
