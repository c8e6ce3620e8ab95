"""``whistle up``: the whole stack on one machine.

Starts what is not configured (embedded PostgreSQL, the Tansu broker), prepares it (databases,
migrations, topics, development keys), then runs the four services as separate uvicorn
processes — or several processes of a service behind its one address, with ``--replicas``
(services/launcher/balancer.py) — and keeps them all running (services/launcher/supervisor.py).
Ctrl-C drains first —
intake refuses new tips while what is in flight finishes — then stops services, the broker and
the database; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import httpx

from contracts.topics import all_topic_names
from reference.county import ReferenceDataError, county_tenancy, load_counties
from services.escalation.calendar import CalendarError, load_calendar, missing_years
from services.escalation.policies import PolicyError, load_policies
from services.launcher.balancer import RoundRobin
from services.launcher.embedded import (
    EmbeddedBroker,
    EmbeddedError,
    EmbeddedPostgres,
    die_with_parent,
    free_port,
    port_is_free,
)
from services.launcher.monitoring import (
    KPI_TOKEN_RENEW_EVERY,
    EmbeddedPrometheus,
    prometheus_binary,
    scrape_config,
    write_kpi_token,
)
from services.launcher.supervisor import Child, CrashLoop, Supervisor
from services.runtime.auth import ensure_dev_keys, issue_token
from services.runtime.db import ensure_database
from services.runtime.inbox import GroupTiming
from services.runtime.kafka import ensure_topics
from services.runtime.migrations import upgrade
from services.runtime.settings import SERVICES, Settings

# Short group sessions for the single-machine broker, so a restarted service resumes in seconds.
EMBEDDED_GROUP_TIMING = GroupTiming(
    session_timeout_ms=2_000, heartbeat_interval_ms=300, rebalance_timeout_ms=1_000
)


class StackError(RuntimeError):
    pass


MAX_REPLICAS = 8


@dataclass(frozen=True)
class Replica:
    """One process of a service: the only one, on the service's port, or one of several, each
    on a port of its own behind the service's port."""

    service: str
    number: int  # 1, 2, … of several; 0 when it is the only one
    port: int

    @property
    def name(self) -> str:
        return self.service if self.number == 0 else f"{self.service}-{self.number}"

    def url(self, settings: Settings) -> str:
        return f"http://{settings.host}:{self.port}"


def parse_replicas(spec: str) -> dict[str, int]:
    """How many processes of each service: ``2`` for every service, or ``dispatch=2,ledger=3``
    (the services not named run one)."""
    counts = dict.fromkeys(SERVICES, 1)
    if spec.strip().isdigit():
        named = {service: spec.strip() for service in SERVICES}
    else:
        named = {}
        for part in spec.split(","):
            service, _, number = part.partition("=")
            if service.strip() not in SERVICES or not number.strip().isdigit():
                raise ValueError(
                    f"{part.strip()!r}: give a number, or service=number with a service among "
                    f"{', '.join(SERVICES)}"
                )
            named[service.strip()] = number.strip()
    for service, number in named.items():
        if not 1 <= int(number) <= MAX_REPLICAS:
            raise ValueError(f"{service}: between 1 and {MAX_REPLICAS} replicas, not {number}")
        counts[service] = int(number)
    return counts


def plan_replicas(
    settings: Settings, counts: Mapping[str, int], port_for: Callable[[], int] = free_port
) -> dict[str, list[Replica]]:
    """Each service's processes: one on its own port, or several on free ports."""
    return {
        service: (
            [Replica(service, 0, settings.port_of(service))]
            if counts.get(service, 1) == 1
            else [Replica(service, n, port_for()) for n in range(1, counts[service] + 1)]
        )
        for service in SERVICES
    }


@dataclass(frozen=True)
class DevToken:
    label: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]


async def prepare(settings: Settings, services: tuple[str, ...] = SERVICES) -> None:
    """Databases, migrations and topics: idempotent, so every start runs it."""
    county = county_tenancy(settings.config_dir).default  # what rows from before are given
    for service in services:
        url = settings.database_url_for(service)
        await ensure_database(url)
        await upgrade(service, url, county=county)
    # Every county's department topics (docs/scale.md, "Tenancy"): the default county's under
    # the names they always had, each other county's under its code.
    await ensure_topics(
        settings.require_kafka(),
        all_topic_names(load_counties(settings.config_dir).departments()),
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
        auth=settings.broker_auth(),
    )


def service_environment(settings: Settings) -> dict[str, str]:
    """The environment a service process needs, derived from the launcher's settings."""
    env = dict(os.environ)
    env.update(
        {
            "WHISTLE_HOME": str(settings.home.resolve()),
            "WHISTLE_CONFIG_DIR": str(settings.config_dir.resolve()),
            "WHISTLE_DATABASE_URL": settings.database_url or "",
            "WHISTLE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "WHISTLE_KAFKA_ENABLE_IDEMPOTENCE": str(settings.kafka_enable_idempotence).lower(),
            "WHISTLE_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka_session_timeout_ms),
            "WHISTLE_KAFKA_HEARTBEAT_INTERVAL_MS": str(settings.kafka_heartbeat_interval_ms),
            "WHISTLE_KAFKA_REBALANCE_TIMEOUT_MS": str(settings.kafka_rebalance_timeout_ms),
            "WHISTLE_JWT_PUBLIC_KEY_FILE": str(settings.public_key_path.resolve()),
        }
    )
    for service in SERVICES:
        env[f"WHISTLE_{service.upper()}_PORT"] = str(settings.port_of(service))
    return env


def spawn_service(
    service: str, env: Mapping[str, str], log_path: Path, *, port: int | None = None
) -> subprocess.Popen[bytes]:
    """A service's process, listening on its own port or, a replica, on ``port``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "services.launcher.cli", "serve", service]
    if port is not None:
        command += ["--port", str(port)]
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            command,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )


def wait_ready(
    urls: Mapping[str, str], processes: Mapping[str, subprocess.Popen[bytes]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    pending = dict(urls)
    with httpx.Client(timeout=2) as client:
        while pending:
            for service, url in list(pending.items()):
                process = processes.get(service)
                if process is not None and process.poll() is not None:
                    raise StackError(
                        f"{service} exited during start-up (code {process.returncode})"
                    )
                try:
                    if client.get(f"{url}/readyz").status_code == 200:
                        del pending[service]
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise StackError(f"not ready after {timeout:.0f}s: {', '.join(sorted(pending))}")
            if pending:
                time.sleep(0.2)


def stop_processes(processes: Mapping[str, subprocess.Popen[bytes]], timeout: float = 15) -> None:
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes.values():
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def dev_tokens(settings: Settings) -> list[tuple[DevToken, str]]:
    counties = load_counties(settings.config_dir)
    reference = counties.default
    township = next(iter(reference.townships))
    department = reference.department_codes()[0]
    grid = next(iter(reference.grids))
    # Each other county's dispatcher of its first township (docs/scale.md, "Tenancy").
    others = [
        DevToken(
            f"township dispatcher, {data.county.name}",
            ("dispatcher",),
            (f"county:{code}", f"township:{next(iter(data.townships))}"),
        )
        for code, data in counties.items()
        if code != reference.county.code
    ]
    wanted = [
        DevToken("township dispatcher", ("dispatcher",), (f"township:{township}",)),
        *others,
        DevToken("county supervisor", ("county_supervisor",), ("township:*", "dept:*")),
        DevToken("county government", ("county_government",), ()),
        DevToken("legal reviewer", ("legal_reviewer",), ()),
        DevToken("township leader", ("township_leader",), (f"township:{township}",)),
        DevToken("county department", ("county_department",), (f"dept:{department}",)),
        DevToken("hotline operator", ("hotline_operator",), ()),
        DevToken("grid worker", ("grid_worker",), (f"grid:{grid}",)),
        DevToken("auditor", ("auditor",), ()),
    ]
    private_key = settings.private_key_path.read_bytes()
    now = datetime.now(UTC)
    return [
        (
            token,
            issue_token(
                private_key,
                subject=f"dev-{token.roles[0]}",
                roles=list(token.roles),
                scopes=list(token.scopes),
                issuer=settings.jwt_issuer,
                audience=settings.audiences(),
                now=now,
            ),
        )
        for token in wanted
    ]


def check_configuration(settings: Settings, now: datetime, say: Callable[[str], None]) -> bool:
    """Whether deploy/config lets the stack start: reference data, policies and calendar
    valid. A calendar without the current year is a loud warning, not a refusal: intake,
    dispatch and the ledger do not need it, and escalation counts the missing year Monday to
    Friday until the notice is added."""
    try:
        load_counties(settings.config_dir)  # every county's, each checked and all together
        load_policies(settings.config_dir / "policies.yaml")
        calendar = load_calendar(settings.config_dir / "calendar.yaml", settings.timezone)
    except (ReferenceDataError, PolicyError, CalendarError) as exc:
        say(f"whistle: the configuration in {settings.config_dir} is invalid; nothing started")
        for reason in getattr(exc, "reasons", [str(exc)]):
            say(f"  - {reason}")
        return False
    if missing := missing_years(calendar, now):
        years = ", ".join(map(str, missing))
        say(
            f"whistle: WARNING: calendar.yaml has no State Council holiday notice for {years}; "
            "deadlines are counted Monday to Friday, provisionally, until it is added "
            "(escalation reloads the file by itself and counts them again)"
        )
    return True


def up(
    settings: Settings,
    say: Callable[[str], None] = print,
    *,
    monitoring: bool = False,
    replicas: Mapping[str, int] | None = None,
) -> int:
    """Run the stack until Ctrl-C or SIGTERM; returns the process exit code."""
    if settings.env == "production":
        # whistle up generates development keys and runs embedded servers: never production.
        say(
            "whistle: `whistle up` runs a development stack and WHISTLE_ENV=production; "
            "nothing started (run each service with `whistle serve`)"
        )
        return 2
    if not check_configuration(settings, datetime.now(UTC), say):
        return 2
    settings.home.mkdir(parents=True, exist_ok=True)
    postgres = (
        None
        if settings.database_url
        else EmbeddedPostgres(
            settings.home / "postgres" / "data", settings.embedded_postgres_port, settings.host
        )
    )
    broker = (
        None
        if settings.kafka_bootstrap
        else EmbeddedBroker(
            settings.embedded_broker_port, settings.host, settings.home / "broker.log"
        )
    )
    processes = plan_replicas(settings, replicas or {})
    ports = {f"{s}": settings.port_of(s) for s in SERVICES}
    every = [r for rs in processes.values() for r in rs]
    ports.update({r.name: r.port for r in every if r.number})
    if postgres:
        ports["embedded PostgreSQL"] = postgres.port
    if broker:
        ports["embedded Kafka broker"] = broker.port
    prometheus: EmbeddedPrometheus | None = None
    kpi_token_path = settings.home / "prometheus" / "kpi-token"
    if monitoring:
        if prometheus_binary() is None:
            say("whistle: --monitoring needs Prometheus (Debian: apt-get install prometheus)")
            return 2
        prometheus = EmbeddedPrometheus(
            settings.home / "prometheus",
            settings.host,
            settings.prometheus_port,
            scrape_config(
                settings,
                rules=settings.prometheus_rules_dir,
                kpi_token=kpi_token_path,
                replicas={s: [r.port for r in rs] for s, rs in processes.items()},
            ),
        )
        ports["Prometheus"] = prometheus.port
    taken = [
        f"{port} ({what})" for what, port in ports.items() if not port_is_free(settings.host, port)
    ]
    if taken:
        say(f"whistle: port already in use on {settings.host}: {', '.join(taken)}; nothing started")
        return 2

    stops = 0

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stops
        stops += 1

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    supervisor: Supervisor | None = None
    balancers = [
        RoundRobin(settings.host, settings.port_of(service), [r.port for r in rs])
        for service, rs in processes.items()
        if len(rs) > 1
    ]
    started = time.monotonic()
    try:
        if postgres:
            say(
                f"starting embedded PostgreSQL on {settings.host}:{postgres.port} "
                f"(data in {postgres.data_dir})"
            )
            settings.database_url = postgres.start()
        if broker:
            say(f"starting embedded Kafka-protocol broker (Tansu) on {broker.bootstrap}")
            settings.kafka_bootstrap = broker.start()
            settings.kafka_enable_idempotence = False
            settings.kafka_session_timeout_ms = EMBEDDED_GROUP_TIMING.session_timeout_ms
            settings.kafka_heartbeat_interval_ms = EMBEDDED_GROUP_TIMING.heartbeat_interval_ms
            settings.kafka_rebalance_timeout_ms = EMBEDDED_GROUP_TIMING.rebalance_timeout_ms
        ensure_dev_keys(settings.private_key_path, settings.public_key_path)
        say("preparing databases, migrations and topics")
        asyncio.run(prepare(settings))
        env = service_environment(settings)
        logs = settings.home / "logs"
        for balancer in balancers:
            balancer.start()
        supervisor = Supervisor(_children(settings, env, logs, postgres, broker, processes), say)
        for child in supervisor.children:
            if child.process is None:
                child.process = child.start()
        services = _service_processes(supervisor, every)
        wait_ready({r.name: r.url(settings) for r in every}, services, timeout=60)
        kpi_token_written = datetime.now(UTC)
        if prometheus:
            write_kpi_token(settings, kpi_token_path, kpi_token_written)
            say(f"starting Prometheus on {prometheus.url} (alerts: {prometheus.url}/alerts)")
            prometheus.start()
        say(_banner(settings, time.monotonic() - started, logs, processes))
        last_health = time.monotonic()
        while not stops:
            supervisor.tend()
            if prometheus and datetime.now(UTC) - kpi_token_written >= KPI_TOKEN_RENEW_EVERY:
                kpi_token_written = datetime.now(UTC)
                write_kpi_token(settings, kpi_token_path, kpi_token_written)
            if time.monotonic() - last_health >= HEALTH_CHECK_SECONDS:
                supervisor.check_health()
                last_health = time.monotonic()
            time.sleep(0.2)
        drain(settings, supervisor, say, processes, stop_now=lambda: stops > 1)
        say("stopping…")
        return 0
    except (StackError, EmbeddedError, ReferenceDataError, CrashLoop) as exc:
        say(f"whistle: {exc}")
        return 1
    except OSError as exc:
        say(f"whistle: cannot reach a server: {exc}")
        return 1
    finally:
        if supervisor is not None:
            stop_processes(_service_processes(supervisor, every))
        for balancer in balancers:
            balancer.stop()
        if prometheus:
            prometheus.stop()
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()


HEALTH_CHECK_SECONDS = 5.0
DRAIN_TIMEOUT_SECONDS = 60.0


def _service_processes(
    supervisor: Supervisor, replicas: Sequence[Replica]
) -> dict[str, subprocess.Popen[bytes]]:
    names = {r.name for r in replicas}
    return {
        c.name: c.process for c in supervisor.children if c.name in names and c.process is not None
    }


def _children(
    settings: Settings,
    env: Mapping[str, str],
    logs: Path,
    postgres: EmbeddedPostgres | None,
    broker: EmbeddedBroker | None,
    processes: Mapping[str, Sequence[Replica]],
) -> list[Child]:
    """What ``whistle up`` keeps running: the embedded servers (already started) and every
    process of the four services (started by the supervisor)."""
    children: list[Child] = []
    if postgres is not None:

        def start_postgres() -> subprocess.Popen[bytes]:
            postgres.start()
            assert postgres.process is not None
            return postgres.process

        children.append(
            Child(
                "embedded PostgreSQL", postgres.log_path, start_postgres, process=postgres.process
            )
        )
    if broker is not None:

        def start_broker() -> subprocess.Popen[bytes]:
            # Restarted empty: the topics first, before services' requests create them with
            # the broker's defaults. The services' outboxes send again what the broker lost.
            broker.start()
            asyncio.run(prepare(settings, services=()))
            assert broker.process is not None
            return broker.process

        children.append(
            Child(
                "embedded Kafka broker",
                broker.log_path or logs / "broker.log",
                start_broker,
                process=broker.process,
            )
        )
    for replica in (r for service in SERVICES for r in processes[service]):
        log_path = logs / f"{replica.name}.log"
        port = replica.port if replica.number else None
        children.append(
            Child(
                replica.name,
                log_path,
                partial(spawn_service, replica.service, env, log_path, port=port),
                healthy=partial(_healthy, replica.url(settings)),
            )
        )
    return children


def _healthy(url: str) -> bool:
    """False when the service says it is unhealthy or does not answer in time; a service that
    is not listening (starting, or exited: the supervisor sees that) is not judged."""
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False


def drain(
    settings: Settings,
    supervisor: Supervisor,
    say: Callable[[str], None],
    processes: Mapping[str, Sequence[Replica]],
    *,
    stop_now: Callable[[], bool],
    timeout: float = DRAIN_TIMEOUT_SECONDS,
) -> bool:
    """Intake stops accepting (503 with Retry-After); wait until every outbox is sent and every
    consumer has processed what its topics hold, or the timeout, or a second Ctrl-C. Returns
    whether everything was drained."""
    intakes = _service_processes(supervisor, processes["intake"]).values()
    running = [p for p in intakes if p.poll() is None]
    if not running:
        return False
    for intake in running:
        intake.send_signal(signal.SIGUSR1)
    say("draining: intake refuses new tips; finishing what is in flight (Ctrl-C again: stop now)")
    deadline = time.monotonic() + timeout
    quiet, last_said = 0, 0.0
    with httpx.Client(timeout=5) as client:
        while not stop_now():
            left = _backlog(client, settings, processes)
            if left is not None and sum(left.values()) == 0:
                quiet += 1
                if quiet >= 2:  # twice: an event in flight between two services shows once
                    say("drained: every event published and consumed")
                    return True
            else:
                quiet = 0
            now = time.monotonic()
            if now > deadline:
                say(f"whistle: still not drained after {timeout:.0f}s; stopping anyway")
                return False
            if left is not None and now - last_said >= 2:
                say("draining: " + ", ".join(f"{s} {n}" for s, n in left.items()) + " left")
                last_said = now
            time.sleep(0.25)
    say("stopping without draining")
    return False


def _backlog(
    client: httpx.Client, settings: Settings, processes: Mapping[str, Sequence[Replica]]
) -> dict[str, int] | None:
    """Events each service has still to publish or to consume; None if one cannot say.

    Replicas share their service's outbox (one database: each counts all of it) and split its
    partitions (each counts the lag of its own)."""
    left: dict[str, int] = {}
    for service in SERVICES:
        unsent, lag = 0, 0
        for replica in processes[service]:
            try:
                answer = client.get(f"{replica.url(settings)}/backlog")
            except httpx.HTTPError:
                return None
            if answer.status_code != 200:
                return None
            body = answer.json()
            unsent = max(unsent, int(body["outbox_unsent"]))
            lag += int(body["consumer_lag"] or 0)
        left[service] = unsent + lag
    return left


# The pages the services serve (Simplified Chinese), at the paths given.
PAGES = (
    ("intake", "/", "群众反映 citizen page"),
    ("dispatch", "/console", "调度台 dispatcher console"),
    ("escalation", "/dept", "部门吹哨报到 department page"),
    ("escalation", "/township", "乡镇联席会议 township meeting page"),
    ("ledger", "/auditor", "审计核验 auditor page"),
)


def _banner(
    settings: Settings, seconds: float, logs: Path, processes: Mapping[str, Sequence[Replica]]
) -> str:
    lines = [f"Whistle is up in {seconds:.1f}s.", ""]
    for service in SERVICES:
        lines.append(f"  {service:<11} {settings.url_of(service)}   (docs: /docs)")
        if len(processes[service]) > 1:
            each = ", ".join(f"{r.name} :{r.port}" for r in processes[service])
            lines.append(f"  {'':<11} {len(processes[service])} replicas, round robin: {each}")
    lines += ["", "Pages:"]
    for service, path, name in PAGES:
        lines.append(f"  {settings.url_of(service)}{path}   {name}")
    lines += ["", "Development tokens (12 h; send as 'Authorization: Bearer …'):"]
    for token, value in dev_tokens(settings):
        scope = f" [{', '.join(token.scopes)}]" if token.scopes else ""
        lines.append(f"  {token.label}{scope}:\n    {value}")
    lines += ["", f"Logs: {logs}/<service>.log   Stop: Ctrl-C", "whistle: ready"]
    return "\n".join(lines)
