"""What every service is made of, so that a service's ``app.py`` only lists what is its own.

``create_service_app`` gives a FastAPI app whose lifespan opens the database, the Kafka
producer, the outbox relay and the inbox consumer, and closes them in reverse order on shutdown
(uvicorn turns SIGTERM and Ctrl-C into that shutdown). Every app answers ``/healthz`` (the
process is up and its consumer is not stuck), ``/readyz`` (database and broker reachable),
``/backlog`` (what is still to publish and to consume: the launcher drains on it) and
``/metrics``. SIGUSR1 starts draining: requests that would change anything get 503 with
``Retry-After`` while what is in flight finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.telemetry import TelemetryConfig
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.tenancy import Counties
from contracts.topics import consumer_group
from services.runtime.auth import TokenVerifier
from services.runtime.clock import Clock, system_clock
from services.runtime.db import Sessions, create_engine, session_factory
from services.runtime.inbox import GroupTiming, InboxConsumer, Subscription
from services.runtime.kafka import BrokerLogs, create_producer
from services.runtime.limits import install_body_limit
from services.runtime.metrics import HTTP_LATENCY, HTTP_REQUESTS
from services.runtime.outbox import OutboxMessage, OutboxRelay, staged
from services.runtime.problems import Problem, install_problem_handlers, problem_response
from services.runtime.retention import RetentionJob, inbox_sweep
from services.runtime.settings import Settings, require_production_ready

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """The live plumbing of one service process, shared by its handlers and views."""

    service: str
    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: Sessions
    producer: AIOKafkaProducer
    relay: OutboxRelay
    verifier: TokenVerifier
    # What this process removes when its retention ends; a service's setup adds its own sweeps.
    retention: RetentionJob
    # The counties the deployment serves (reference data, docs/scale.md); None for a service
    # definition that names none (a test's).
    counties: Counties | None = None
    consumer: InboxConsumer | None = None
    draining: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    # What /readyz adds under "details", by name: each is asked at every probe and shown when
    # it answers something (a condition an operator must know of that does not make the
    # service unready, such as escalation's provisional calendar).
    readiness_details: dict[str, Callable[[], Any]] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def run_in_background(self, name: str, loop: Coroutine[Any, Any, None]) -> None:
        """Run a loop for as long as the service runs: it is cancelled at shutdown and, if it
        dies, takes the process down, like the outbox relay and the inbox consumer."""
        task = asyncio.create_task(loop, name=f"{self.service}-{name}")
        task.add_done_callback(_exit_if_crashed)
        self.tasks.append(task)

    def start_draining(self) -> None:
        log.info("draining: refusing new requests that change anything")
        self.draining = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One database transaction; events it staged leave as soon as it commits."""
        async with self.sessions() as session, session.begin():
            yield session
        if staged(session):
            self.relay.wake()


Setup = Callable[[Runtime], Awaitable[Subscription | None]]

# Whistle's metrics are Prometheus's (services/runtime/metrics.py) and no OpenTelemetry provider
# is configured, yet FastAPI's native telemetry asks OpenTelemetry for one on every request (an
# environment lookup each time): 2 % of intake's CPU under load, for nothing.
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    routers: Sequence[APIRouter] = ()
    # Loads what the service needs (reference data, policies) into runtime.state, starts the
    # service's own loops (runtime.run_in_background) and says what it consumes; None for a
    # service that consumes nothing.
    setup: Setup | None = None
    # The database role the service works as (created by its migrations), if not the login's.
    database_role: str | None = None
    # Which counties the deployment serves, read from the reference data at start (the runtime
    # cannot read it itself: reference sits beside it): the relay stamps the default on every
    # event, the inbox refuses another county's, tokens without a county get the default.
    counties: Callable[[Path], Counties] | None = None


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def _runtime_dependency(request: Request) -> Runtime:
    """``get_runtime`` for ``Depends``: a coroutine, since FastAPI runs a plain function
    dependency in a worker thread, and that hop was 3 % of intake's CPU under load
    (docs/benchmarks.md)."""
    return get_runtime(request)


RuntimeDep = Annotated[Runtime, Depends(_runtime_dependency)]


def create_service_app(
    definition: ServiceDefinition,
    settings: Settings | None = None,
    clock: Clock = system_clock,
) -> FastAPI:
    settings = settings or Settings()
    name = definition.name
    # In production, a development default (a key that would be generated, a public secret)
    # stops the service here, before it binds a port, naming each.
    require_production_ready(settings, name)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with _running(definition, settings, clock) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title=f"Whistle {name}", lifespan=lifespan, telemetry=NO_OPENTELEMETRY)
    install_problem_handlers(app)
    # Added innermost first: the body limit's refusal reaches the route as raised, and the
    # security headers wrap everything, the draining refusal included.
    install_body_limit(app, settings)
    app.add_middleware(RefuseWhileDraining)
    app.add_middleware(HttpMetrics, service=name)
    app.add_middleware(SecurityHeaders)
    app.include_router(_operations_router())
    for router in definition.routers:
        app.include_router(router)
    return app


@asynccontextmanager
async def _running(
    definition: ServiceDefinition, settings: Settings, clock: Clock
) -> AsyncIterator[Runtime]:
    name = definition.name
    public_key = settings.public_key_path.read_bytes()
    counties = definition.counties(settings.config_dir) if definition.counties else None
    default_county = counties.default if counties else None
    engine = create_engine(settings.database_url_for(name), role=definition.database_role)
    sessions = session_factory(engine)
    bootstrap = settings.require_kafka()
    auth = settings.broker_auth()
    producer = create_producer(
        bootstrap,
        client_id=f"whistle-{name}",
        enable_idempotence=settings.kafka_enable_idempotence,
        auth=auth,
    )
    await producer.start()
    logs = BrokerLogs(bootstrap, client_id=f"whistle-{name}-logs", auth=auth)
    await logs.start()
    relay = OutboxRelay(
        sessions,
        producer,
        clock,
        service=name,
        logs=logs,
        poll_seconds=settings.outbox_poll_seconds,
        check_seconds=settings.outbox_check_seconds,
        retention=timedelta(days=settings.outbox_retention_days),
        county=default_county,
    )
    runtime = Runtime(
        service=name,
        settings=settings,
        clock=clock,
        engine=engine,
        sessions=sessions,
        producer=producer,
        relay=relay,
        verifier=TokenVerifier(
            public_key,
            issuer=settings.jwt_issuer,
            audience=settings.audience_of(name),
            max_lifetime=timedelta(hours=settings.jwt_max_lifetime_hours),
            default_county=default_county,
        ),
        retention=RetentionJob(name, clock, timedelta(hours=settings.retention_interval_hours)),
        counties=counties,
    )
    consumer: InboxConsumer | None = None
    with contextlib.suppress(NotImplementedError, RuntimeError):
        # The launcher's signal to drain (whistle up, first Ctrl-C); not available off Unix.
        asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, runtime.start_draining)
    try:
        subscription = await definition.setup(runtime) if definition.setup else None
        runtime.run_in_background("outbox-relay", relay.run())
        if subscription is not None:
            consumer = InboxConsumer(
                service=name,
                subscription=subscription,
                sessions=sessions,
                bootstrap=bootstrap,
                group_id=consumer_group(settings.kafka_group_prefix, name),
                dlq_producer=producer,
                clock=clock,
                max_attempts=settings.consumer_max_attempts,
                retry_backoff=settings.consumer_retry_backoff_seconds,
                after_staged_commit=relay.wake,
                group_timing=GroupTiming(
                    settings.kafka_session_timeout_ms,
                    settings.kafka_heartbeat_interval_ms,
                    settings.kafka_rebalance_timeout_ms,
                ),
                logs=logs,
                verify_seconds=settings.consumer_verify_seconds,
                stuck_after_seconds=settings.consumer_stuck_after_seconds,
                auth=auth,
                counties=counties,
            )
            await consumer.start()
            runtime.consumer = consumer
            runtime.run_in_background("inbox-consumer", consumer.run())
            runtime.run_in_background(
                "consumer-watch", consumer.watch(settings.consumer_watch_seconds)
            )
            runtime.retention.add(
                inbox_sweep(sessions, timedelta(days=settings.inbox_retention_days))
            )
        runtime.run_in_background("retention", runtime.retention.run())
        yield runtime
    finally:
        for task in runtime.tasks:
            task.cancel()
        for task in runtime.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGUSR1)
        if consumer is not None:
            await consumer.stop()
        await logs.stop()
        await producer.stop()
        await engine.dispose()


def _exit_if_crashed(task: asyncio.Task[None]) -> None:
    """A background loop that dies must take the process down so its supervisor restarts it."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.critical("%s stopped: %r; shutting the process down", task.get_name(), exc)
        os.kill(os.getpid(), signal.SIGTERM)


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz(request: Request) -> dict[str, str]:
        consumer = get_runtime(request).consumer
        if consumer is not None and consumer.stuck:
            raise Problem(
                503,
                "Consumer stuck",
                f"{consumer.lag} events behind and none processed lately; restart the process.",
            )
        return {"status": "ok"}

    @router.get("/backlog")
    async def backlog(request: Request) -> dict[str, Any]:
        """What this service has still to do: unsent outbox events, unprocessed events."""
        runtime = get_runtime(request)
        async with runtime.sessions() as session:
            unsent = await session.scalar(
                select(func.count()).where(OutboxMessage.sent_at.is_(None))  # type: ignore[union-attr]
            )
        lag = None
        if runtime.consumer is not None:
            async with asyncio.timeout(5):
                lag = await runtime.consumer.measure_lag()
        return {"outbox_unsent": int(unsent or 0), "consumer_lag": lag}

    @router.get("/readyz")
    async def readyz(request: Request) -> dict[str, Any]:
        runtime = get_runtime(request)
        checks: dict[str, str] = {}
        try:
            async with asyncio.timeout(2):
                async with runtime.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception:
            # The detail is for the operator's log, not for whoever asks /readyz.
            log.warning("readyz: the database is unreachable", exc_info=True)
            checks["database"] = "unreachable"
        try:
            async with asyncio.timeout(2):
                await runtime.producer.client.fetch_all_metadata()
            checks["broker"] = "ok"
        except Exception:
            log.warning("readyz: the broker is unreachable", exc_info=True)
            checks["broker"] = "unreachable"
        if any(v != "ok" for v in checks.values()):
            raise Problem(503, "Not ready", "A dependency is unreachable.", checks=checks)
        answer: dict[str, Any] = {"status": "ready", "checks": checks}
        details = {name: detail() for name, detail in runtime.readiness_details.items()}
        if details := {name: value for name, value in details.items() if value is not None}:
            answer["details"] = details
        return answer

    @router.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


# Methods that change nothing: still answered while draining.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DRAIN_RETRY_AFTER_SECONDS = 30


class RefuseWhileDraining:
    """ASGI middleware answering 503 with ``Retry-After`` to a request that would change
    something once the service drains; reads still pass.

    The three middlewares here are plain ASGI rather than ``@app.middleware("http")``:
    Starlette's ``BaseHTTPMiddleware`` runs each request through an extra task and memory
    streams, which a profile of intake under load put at a fifth of its CPU for the three."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            runtime: Runtime | None = getattr(scope["app"].state, "runtime", None)
            if runtime is not None and runtime.draining:
                problem = Problem(
                    503,
                    "服务正在停止",
                    "系统正在停止维护，您的请求尚未受理，请稍后重试。",
                    type_="https://whistle.example/problems/draining",
                    headers={"Retry-After": str(DRAIN_RETRY_AFTER_SECONDS)},
                )
                await problem_response(problem, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


# The methods the metrics name; any other token a client sends is counted as "other", so that
# no request can make a new series.
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


NOSNIFF = (b"x-content-type-options", b"nosniff")


class SecurityHeaders:
    """ASGI middleware, outermost of the service's own: every response carries
    ``X-Content-Type-Options: nosniff``, the draining refusal and every problem included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_nosniff(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != NOSNIFF[0]]
                message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await self.app(scope, receive, with_nosniff)


class HttpMetrics:
    """ASGI middleware counting each request by method, route template and status, and timing
    it by route template (never by the raw path, so that no request can make a new series). A
    request that raised past it counts as 500, what the server then answers."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            if template != "/metrics":
                HTTP_REQUESTS.labels(
                    self.service, method_label(scope["method"]), template, str(status)
                ).inc()
                HTTP_LATENCY.labels(self.service, template).observe(time.perf_counter() - started)
