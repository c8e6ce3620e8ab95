"""The gauges and histograms of docs/metrics.md read what happened: on the real PostgreSQL and
broker, with the services in process and time moved by hand.

The test database and topics are shared by the whole session, so each test first lets the
service catch up with what earlier modules left on its topics, then compares a count before
and after what it does: nothing else is in flight in between."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from reference.county import load_reference
from services.dispatch.metrics import refresh_open_cases
from services.dispatch.models import Case
from services.escalation.metrics import OverdueScope, refresh_overdue
from services.runtime.db import Sessions
from services.runtime.inbox import InboxConsumer
from services.runtime.kafka import BrokerLogs, ensure_topics
from services.runtime.outbox import OutboxRelay, stage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock, consuming, sample_event
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import (
    Escalation,
    auth,
    blow,
    escalation,  # noqa: F401 (the module's escalation service, in process)
    summoned,
    whistle,
)
from tests.support.infra import Infra, eventually


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


async def caught_up(consumer: InboxConsumer | None) -> bool:
    """Assigned its partitions and nothing left to process on them."""
    assert consumer is not None
    lags = await consumer.measure_partition_lag()
    return bool(lags) and not any(lags.values())


# --- dispatch: open cases by state and township -----------------------------------------------


async def test_a_case_opened_and_assigned_counts_once_in_its_state_and_township(
    intake: tuple[httpx.AsyncClient, Runtime], dispatch: tuple[httpx.AsyncClient, Runtime]
) -> None:
    citizen, _ = intake
    _, runtime = dispatch
    await eventually(lambda: caught_up(runtime.consumer), what="dispatch caught up")
    before = await refresh_open_cases(runtime)

    # 白家庄镇 (T08): no other test reports there.
    response = await citizen.post(
        "/v1/tips", json={"text": "村口有人占道摆摊，车都过不去了", "grid_id": "T08V01G01"}
    )
    assert response.status_code == 201, response.text
    tip_id = UUID(response.json()["tip_id"])

    async def opened() -> Case | None:
        async with runtime.sessions() as session:
            return await session.scalar(select(Case).where(Case.tip_id == tip_id))  # type: ignore[arg-type]

    case = await eventually(opened, what="the tip's case")
    assert (case.status, case.township_code) == ("assigned", "T08")

    after = await refresh_open_cases(runtime)
    assert after[("assigned", "T08")] == before[("assigned", "T08")] + 1
    assert {k: v for k, v in after.items() if k != ("assigned", "T08")} == {
        k: v for k, v in before.items() if k != ("assigned", "T08")
    }
    assert (
        sample("whistle_dispatch_open_cases", state="assigned", township="T08")
        == after[("assigned", "T08")]
    )
    # Every known township and open state shows, a quiet one as 0.
    assert (
        sample("whistle_dispatch_open_cases", state="arbitration", township="T15")
        == after[("arbitration", "T15")]
    )


# --- the outbox backlog --------------------------------------------------------------------------


async def test_the_outbox_backlog_reads_the_unsent_events_and_the_oldest_ones_wait(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = f"test.backlog.{uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [topic], partitions=1)
    relay = OutboxRelay(sessions, producer, clock, service="test-backlog", logs=logs)
    assert await relay.measure_backlog() == (0, 0.0)
    assert sample("whistle_outbox_unsent_events", service="test-backlog") == 0

    first = sample_event(clock, "case-backlog")
    async with sessions() as session, session.begin():
        stage(session, topic, first)
        stage(session, topic, sample_event(clock, "case-backlog"))
        stage(session, topic, sample_event(clock, "case-backlog"))
    clock.now = first.time + timedelta(seconds=30)

    assert await relay.measure_backlog() == (3, 30.0)
    assert sample("whistle_outbox_unsent_events", service="test-backlog") == 3
    assert sample("whistle_outbox_oldest_unsent_age_seconds", service="test-backlog") == 30

    assert await relay.publish_batch() == 3
    assert await relay.measure_backlog() == (0, 0.0)
    assert sample("whistle_outbox_unsent_events", service="test-backlog") == 0
    assert sample("whistle_outbox_oldest_unsent_age_seconds", service="test-backlog") == 0


# --- consumer lag per partition ---------------------------------------------------------------


async def test_consumer_lag_is_reported_per_partition_and_returns_to_zero(
    infra: Infra,
    sessions: Sessions,
    producer: AIOKafkaProducer,
    clock: MovableClock,
    logs: BrokerLogs,
) -> None:
    topic = f"test.lag.{uuid4().hex[:8]}"
    group = f"test-lag-{uuid4().hex[:8]}"
    await ensure_topics(infra.bootstrap, [topic], partitions=2)
    release = asyncio.Event()

    async def held(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        await release.wait()

    for _ in range(3):  # all on one partition
        event = sample_event(clock, "case-lag")
        await producer.send_and_wait(topic, value=event.to_bytes(), key=b"case-lag", partition=0)

    async with consuming(
        infra, sessions, producer, clock, topic, held, group, logs=logs
    ) as consumer:
        # The first event is held in its handler: the three are still to process.
        async def lagging() -> bool | None:
            return await consumer.refresh_lag() == 3 or None

        await eventually(lagging, what="a lag of 3")
        labels = {"service": "test", "group": group, "topic": topic}
        assert sample("whistle_consumer_partition_lag_events", **labels, partition="0") == 3
        assert sample("whistle_consumer_partition_lag_events", **labels, partition="1") == 0
        assert sample("whistle_consumer_lag_events", service="test") == 3

        release.set()

        async def drained() -> bool | None:
            return await consumer.refresh_lag() == 0 or None

        await eventually(drained, what="no lag")
        assert sample("whistle_consumer_partition_lag_events", **labels, partition="0") == 0
        assert sample("whistle_consumer_lag_events", service="test") == 0
        assert (
            sample(
                "whistle_events_consumed_total",
                service="test",
                topic=topic,
                outcome="processed",
            )
            == 3
        )
        # Outcomes that never happened read 0, not nothing.
        assert (
            sample(
                "whistle_events_consumed_total",
                service="test",
                topic=topic,
                outcome="dead_lettered",
            )
            == 0
        )


# --- escalation: overdue clocks and the 报到 latency ---------------------------------------------


async def test_an_overdue_receipt_clock_counts_until_the_receipt_whose_latency_is_observed(
    escalation: Escalation,  # noqa: F811
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    runtime = escalation.runtime
    scope = OverdueScope.of(load_reference(migrated.config_dir))
    now = local(2026, 11, 16, 10, 0)  # Monday
    escalation.clock.now = now
    await eventually(lambda: caught_up(runtime.consumer), what="escalation caught up")
    before = await refresh_overdue(runtime.sessions, scope, escalation.clock)
    count = sample("whistle_escalation_whistle_receipt_latency_seconds_count", urgency="general")
    total = sample("whistle_escalation_whistle_receipt_latency_seconds_sum", urgency="general")

    # Blown on Thursday 12 Nov 10:00: CGJ's receipt was due on Friday 10:00, and is overdue.
    blown = whistle(uuid4(), ["CGJ"])
    blown_at = local(2026, 11, 12, 10, 0)
    await blow(producer, blown, blown_at)
    cgj = token("county_department", "dept:CGJ")
    await summoned(escalation, cgj, "CGJ", blown.whistle_id)

    overdue = await refresh_overdue(runtime.sessions, scope, escalation.clock)
    receipt = ("T03", "whistle_receipt")
    assert overdue.by_township[receipt] == before.by_township[receipt] + 1
    assert overdue.by_department[("CGJ", "whistle_receipt")] == (
        before.by_department[("CGJ", "whistle_receipt")] + 1
    )
    assert (
        overdue.by_township[("T03", "whistle_reply")]
        == before.by_township[("T03", "whistle_reply")]
    )
    assert (
        sample(
            "whistle_escalation_overdue_clocks_by_township", township="T03", kind="whistle_receipt"
        )
        == overdue.by_township[receipt]
    )
    assert (
        sample(
            "whistle_escalation_overdue_clocks_by_department",
            department="CGJ",
            kind="whistle_receipt",
        )
        == overdue.by_department[("CGJ", "whistle_receipt")]
    )

    response = await escalation.http.post(
        f"/v1/whistles/{blown.whistle_id}/receipt",
        json={"receipt_no": "CGJ-2026-0042"},
        headers=auth(cgj),
    )
    assert response.status_code == 201, response.text
    latency = (now - blown_at).total_seconds()  # four days
    assert (
        sample("whistle_escalation_whistle_receipt_latency_seconds_count", urgency="general")
        == count + 1
    )
    assert (
        sample("whistle_escalation_whistle_receipt_latency_seconds_sum", urgency="general")
        == total + latency
    )

    # A second receipt is refused (409) and observes nothing.
    again = await escalation.http.post(
        f"/v1/whistles/{blown.whistle_id}/receipt",
        json={"receipt_no": "CGJ-2026-0043"},
        headers=auth(cgj),
    )
    assert again.status_code == 409, again.text
    assert (
        sample("whistle_escalation_whistle_receipt_latency_seconds_count", urgency="general")
        == count + 1
    )

    after = await refresh_overdue(runtime.sessions, scope, escalation.clock)
    assert after.by_township[receipt] == before.by_township[receipt]


@pytest.mark.parametrize("step", ["warning", "overdue", "chase", "supervise"])
async def test_every_ladder_step_shows_before_it_fires(
    escalation: Escalation,  # noqa: F811
    step: str,
) -> None:
    assert sample("whistle_escalation_steps_fired_total", step=step) >= 0
