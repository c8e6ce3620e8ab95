"""What the launcher and Kubernetes read from a service: /healthz with a stuck consumer,
/backlog, and draining on SIGUSR1."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest

from contracts.topics import CASES
from services.intake.app import create_app
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.integration.conftest import MovableClock, sample_event
from tests.support.infra import eventually


@pytest.fixture
async def intake(migrated: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """An intake of its own (its own consumer group), with a watchdog that judges quickly."""
    settings = migrated.model_copy(
        update={
            "kafka_group_prefix": f"health-{uuid4().hex[:8]}",
            "consumer_watch_seconds": 0.2,
            "consumer_stuck_after_seconds": 1.0,
        }
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, app.state.runtime


async def test_a_consumer_that_stops_fetching_while_events_wait_fails_healthz(
    intake: tuple[httpx.AsyncClient, Runtime], clock: MovableClock
) -> None:
    client, runtime = intake
    consumer = runtime.consumer
    assert consumer is not None
    # The known aiokafka failure mode is a fetcher that stops returning records while the
    # group stays joined; pausing every assigned partition is exactly that from outside.
    kafka = consumer._consumer
    assigned = await eventually(
        lambda: _assignment(kafka), what="the consumer's partitions", within=30
    )
    assert (await client.get("/healthz")).status_code == 200
    kafka.pause(*assigned)
    for partition in range(3):
        await runtime.producer.send_and_wait(
            CASES, sample_event(clock, f"case-{partition}").to_bytes(), partition=partition
        )

    async def unhealthy() -> httpx.Response | None:
        answer = await client.get("/healthz")
        return answer if answer.status_code == 503 else None

    answer = await eventually(unhealthy, what="/healthz to fail", within=15)
    assert answer.headers["content-type"] == "application/problem+json"
    assert "behind" in answer.json()["detail"]
    backlog = (await client.get("/backlog")).json()
    assert backlog["consumer_lag"] >= 3

    kafka.resume(*assigned)

    async def healthy() -> bool:
        return (await client.get("/healthz")).status_code == 200

    await eventually(healthy, what="/healthz to recover once events flow", within=15)


async def _assignment(kafka: object) -> set[object] | None:
    assigned = kafka.assignment()  # type: ignore[attr-defined]
    return set(assigned) if assigned else None


async def test_draining_refuses_changes_with_503_and_keeps_answering_reads(
    intake: tuple[httpx.AsyncClient, Runtime],
) -> None:
    client, runtime = intake
    os.kill(os.getpid(), signal.SIGUSR1)  # what `whistle up` sends on the first Ctrl-C

    async def draining() -> bool:
        return runtime.draining

    await eventually(draining, what="the service to drain", within=5)

    refused = await client.post("/v1/tips", json={"text": "路边有人占道摆摊"})
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert int(refused.headers["retry-after"]) > 0
    assert refused.json()["title"] == "服务正在停止"
    assert (await client.get("/healthz")).status_code == 200
    backlog = await client.get("/backlog")
    assert backlog.status_code == 200
    assert set(backlog.json()) == {"outbox_unsent", "consumer_lag"}
