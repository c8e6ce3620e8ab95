"""``whistle dlq list`` and ``whistle dlq replay`` against the real broker, on dead letters the
inbox consumer itself parked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import DeadlinesSet
from contracts.topics import dlq_topic
from services.launcher.cli import main
from services.launcher.embedded import free_port
from services.runtime.db import Sessions
from services.runtime.dlq import ParkedEvent, parked
from services.runtime.inbox import PoisonEvent
from services.runtime.kafka import ensure_topics
from services.runtime.metrics import EVENTS_CONSUMED
from services.runtime.settings import Settings
from tests.integration.conftest import Effect, MovableClock, consuming, sample_event
from tests.support.infra import Infra, eventually, read_everything


@pytest.fixture(autouse=True)
def broker_configured(infra: Infra, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_KAFKA_BOOTSTRAP", infra.bootstrap)


async def whistle(*argv: str) -> int:
    # The command runs its own event loop, so not on the test's.
    return await asyncio.to_thread(main, list(argv))


async def _topic(infra: Infra) -> str:
    topic = f"test.dlq.{uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [topic, dlq_topic(topic)])
    return topic


class Township:
    """A handler that refuses events until the reference data is fixed."""

    def __init__(self) -> None:
        self.fixed = False

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        if not self.fixed:
            raise PoisonEvent("township T99 does not exist")
        session.add(Effect(event_id=event.id, note=topic))


# Handler attempts as the services make them unless configured otherwise.
MAX_ATTEMPTS = Settings.model_fields["consumer_max_attempts"].default


@asynccontextmanager
async def consuming_in_own_group(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    topic: str,
    handler: Township,
) -> AsyncIterator[str]:
    """An inbox consumer of ``topic`` in a group of its own; yields the group."""
    group = f"g-dlq-{uuid4().hex[:8]}"
    async with consuming(
        infra, sessions, producer, clock, topic, handler, group, max_attempts=MAX_ATTEMPTS
    ):
        yield group


async def parked_count(infra: Infra, topic: str, count: int) -> list[ParkedEvent]:
    async def probe() -> list[ParkedEvent]:
        found = await parked(infra.bootstrap, [topic])
        return found if len(found) >= count else []

    return await eventually(probe, what=f"{count} records parked in {dlq_topic(topic)}")


async def effects(sessions: Sessions, event_id: str) -> int:
    async with sessions() as session:
        query = select(func.count()).select_from(Effect).where(Effect.event_id == event_id)
        return int(await session.scalar(query) or 0)


async def test_a_parked_event_is_listed_sent_back_once_and_handled_after_the_fix(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = await _topic(infra)
    event = sample_event(clock)
    handler = Township()
    await producer.send_and_wait(topic, event.to_bytes(), key=b"case-1")
    async with consuming_in_own_group(infra, sessions, producer, clock, topic, handler) as group:
        await parked_count(infra, topic, 1)

        assert await whistle("dlq", "list", topic) == 0
        listed = capsys.readouterr().out
        assert f"{dlq_topic(topic)}[" in listed
        assert f"{DeadlinesSet.event_type} {event.id}" in listed
        assert f"from {topic}[" in listed and "]@0" in listed
        assert f"consumer {group}  attempts 1" in listed
        assert "reason: PoisonEvent: township T99 does not exist" in listed
        assert "not replayed" in listed
        assert "1 parked, 1 not replayed" in listed

        handler.fixed = True
        assert await whistle("dlq", "replay", dlq_topic(topic)) == 0
        assert "1 event sent back" in capsys.readouterr().out
        await eventually(lambda: effects(sessions, event.id), what="the replayed event handled")

        assert await whistle("dlq", "list", topic, "--json") == 0
        (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert row["event_id"] == event.id
        assert row["topic"] == topic and row["original_offset"] == 0
        assert row["consumer"] == group and row["attempts"] == 1
        assert row["reason"] == "PoisonEvent: township T99 does not exist"
        assert row["replayed_at"] is not None

        assert await whistle("dlq", "replay", topic) == 0
        assert capsys.readouterr().out.startswith("0 events sent back")

        # Sent anyway, the copy is a duplicate the inbox drops.
        duplicates = EVENTS_CONSUMED.labels("test", topic, "duplicate")
        assert await whistle("dlq", "replay", topic, "--again") == 0
        assert "1 event sent back" in capsys.readouterr().out
        await eventually(
            lambda: _positive(duplicates._value.get()),  # type: ignore[attr-defined]
            what="the second copy dropped as a duplicate",
        )

    assert await effects(sessions, event.id) == 1
    sent = await read_everything(infra.bootstrap, [topic])
    assert len(sent) == 3  # the original, the replay, the replay --again
    replayed = sent[-1]
    assert replayed.key == b"case-1" and replayed.value == event.to_bytes()
    assert not [name for name, _ in replayed.headers if name.startswith("dlq-")]


async def _positive(value: float) -> bool:
    return value > 0


async def test_a_record_two_groups_parked_is_sent_back_once(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = await _topic(infra)
    event = sample_event(clock)
    await producer.send_and_wait(topic, event.to_bytes(), key=b"case-2")
    async with (
        consuming_in_own_group(infra, sessions, producer, clock, topic, Township()),
        consuming_in_own_group(infra, sessions, producer, clock, topic, Township()),
    ):
        both = await parked_count(infra, topic, 2)
    assert {p.event_id for p in both} == {event.id}

    assert await whistle("dlq", "replay", topic, "--id", event.id) == 0
    assert capsys.readouterr().out.startswith("1 event sent back")
    assert len(await read_everything(infra.bootstrap, [topic])) == 2
    assert all(p.replayed_at is not None for p in await parked(infra.bootstrap, [topic]))


async def test_a_value_that_is_not_a_cloudevent_is_listed_as_such_and_ids_must_be_parked(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = await _topic(infra)
    await producer.send_and_wait(topic, b"{not json at all", key=b"case-3")
    async with consuming_in_own_group(infra, sessions, producer, clock, topic, Township()):
        await parked_count(infra, topic, 1)

    assert await whistle("dlq", "list") == 0
    listed = capsys.readouterr().out
    assert f"{dlq_topic(topic)}[" in listed
    assert "not a CloudEvent" in listed
    assert "reason: not a CloudEvents 1.0 JSON event" in listed

    assert await whistle("dlq", "replay", topic, "--id", "no-such-event") == 2
    assert f"not parked in {dlq_topic(topic)}: no-such-event" in capsys.readouterr().err
    assert len(await read_everything(infra.bootstrap, [topic])) == 1, "nothing was sent"


async def test_an_empty_or_unknown_topic_has_nothing_parked(
    infra: Infra, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = await _topic(infra)
    assert await whistle("dlq", "list", empty) == 0
    assert capsys.readouterr().out == f"nothing is parked in {dlq_topic(empty)}\n"
    assert await whistle("dlq", "replay", empty) == 0
    assert capsys.readouterr().out == f"0 events sent back from {dlq_topic(empty)}\n"

    unknown = f"test.dlq.{uuid4().hex[:8]}"
    assert await whistle("dlq", "list", unknown, "--json") == 0
    assert capsys.readouterr().out == ""
    assert await whistle("dlq", "list", dlq_topic(unknown)) == 0
    assert capsys.readouterr().out == f"nothing is parked in {dlq_topic(unknown)}\n"
    assert await whistle("dlq", "replay", unknown) == 2
    assert f"the broker has no topic {dlq_topic(unknown)}" in capsys.readouterr().err


async def test_without_a_reachable_broker_the_commands_say_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WHISTLE_KAFKA_BOOTSTRAP", f"127.0.0.1:{free_port()}")
    assert await whistle("dlq", "list") == 1
    assert "cannot reach the broker" in capsys.readouterr().err
    assert await whistle("dlq", "replay", "intake.tips.v1") == 1
    assert "cannot reach the broker" in capsys.readouterr().err

    monkeypatch.delenv("WHISTLE_KAFKA_BOOTSTRAP")
    assert await whistle("dlq", "list") == 2
    assert "WHISTLE_KAFKA_BOOTSTRAP is not set" in capsys.readouterr().err
