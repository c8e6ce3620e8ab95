"""What every benchmark runs on: its own embedded PostgreSQL and Tansu broker on free loopback
ports, prepared as ``whistle up`` prepares them, in a temporary directory."""

from __future__ import annotations

import asyncio
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.launcher.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.launcher.stack import (
    EMBEDDED_GROUP_TIMING,
    Replica,
    plan_replicas,
    prepare,
    service_environment,
    spawn_service,
    stop_processes,
    wait_ready,
)
from services.runtime.auth import ensure_dev_keys, issue_token
from services.runtime.settings import SERVICES, Settings

REPO = Path(__file__).resolve().parents[1]

# Every benchmark client posts from 127.0.0.1, which intake's per-address limits (30 tips an
# hour by default) would refuse after a few dozen tips: the services run with limits no load
# here reaches.
LOAD_LIMITS = {
    "WHISTLE_RATE_LIMIT_TIPS_PER_ADDRESS_PER_HOUR": "10000000",
    "WHISTLE_RATE_LIMIT_LOOKUPS_PER_ADDRESS_PER_HOUR": "10000000",
}


@dataclass(frozen=True)
class Servers:
    """Fresh embedded servers, prepared; the server objects themselves are kept so that a
    benchmark may stop, freeze or restart them."""

    settings: Settings
    root: Path
    postgres: EmbeddedPostgres
    broker: EmbeddedBroker


@contextmanager
def embedded_servers(**settings_overrides: Any) -> Iterator[Servers]:
    """Fresh servers in a temporary directory, with ``settings_overrides`` applied to the
    settings; on exit the servers stop and the database's data is removed (as root it lives
    outside the temporary directory, under the state directory, and would otherwise stay)."""
    with tempfile.TemporaryDirectory(prefix="whistle-bench-") as tmp:
        root = Path(tmp)
        postgres = EmbeddedPostgres(root / "postgres" / "data", free_port())
        broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
        fields: dict[str, Any] = {
            "home": root / "home",
            "config_dir": REPO / "deploy" / "config",
            "kafka_enable_idempotence": False,
            "kafka_session_timeout_ms": EMBEDDED_GROUP_TIMING.session_timeout_ms,
            "kafka_heartbeat_interval_ms": EMBEDDED_GROUP_TIMING.heartbeat_interval_ms,
            "kafka_rebalance_timeout_ms": EMBEDDED_GROUP_TIMING.rebalance_timeout_ms,
            "log_level": "WARNING",
            **{f"{s}_port": free_port() for s in SERVICES},
        }
        settings = Settings(**{**fields, **settings_overrides})
        try:
            settings.database_url = postgres.start()
            settings.kafka_bootstrap = broker.start()
            ensure_dev_keys(settings.private_key_path, settings.public_key_path)
            asyncio.run(prepare(settings))
            yield Servers(settings, root, postgres, broker)
        finally:
            broker.stop()
            postgres.stop()
            postgres.remove_data()


@contextmanager
def embedded_stack() -> Iterator[tuple[Settings, Path]]:
    """Settings pointing at fresh servers, and the scratch directory they live in."""
    with embedded_servers() as servers:
        yield servers.settings, servers.root


class Services:
    """The four services as processes, as ``whistle up`` runs them (one log each in ``logs``);
    a benchmark may kill one and start it again. With ``replicas`` (service → count), a
    service runs as that many processes, each on a port of its own (``urls``), and no
    balancer: the benchmark's clients spread themselves over the replicas, so that what is
    measured is the replicas, not a proxy's byte copying."""

    def __init__(
        self,
        settings: Settings,
        logs: Path,
        extra_env: Mapping[str, str] | None = None,
        replicas: Mapping[str, int] | None = None,
    ) -> None:
        self.settings = settings
        self.logs = logs
        self.env = {**service_environment(settings), **(extra_env or {})}
        self.replicas: dict[str, list[Replica]] = plan_replicas(settings, replicas or {})
        # By replica name: the service's own name when it runs alone, else ``intake-1``, …
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def urls(self, service: str) -> list[str]:
        return [replica.url(self.settings) for replica in self.replicas[service]]

    def start(self, *services: str, timeout: float = 60) -> None:
        """Start ``services`` (default: all four), every replica, and wait until ready."""
        started = [r for s in services or SERVICES for r in self.replicas[s]]
        for replica in started:
            self.processes[replica.name] = spawn_service(
                replica.service,
                self.env,
                self.logs / f"{replica.name}.log",
                port=replica.port if replica.number else None,
            )
        wait_ready(
            {r.name: r.url(self.settings) for r in started},
            {r.name: self.processes[r.name] for r in started},
            timeout=timeout,
        )

    def stop(self) -> None:
        stop_processes(self.processes)


@contextmanager
def running_services(
    settings: Settings,
    logs: Path,
    extra_env: Mapping[str, str] | None = None,
    replicas: Mapping[str, int] | None = None,
    only: Sequence[str] = (),
) -> Iterator[Services]:
    """The four services (or ``only`` those), ready; stopped on exit."""
    services = Services(settings, logs, extra_env, replicas)
    try:
        services.start(*only)
        yield services
    finally:
        services.stop()


def auditor_token(settings: Settings, subject: str = "bench") -> str:
    """A token with the auditor role, signed with the development key under the home."""
    return issue_token(
        settings.private_key_path.read_bytes(),
        subject=subject,
        roles=["auditor"],
        scopes=[],
        issuer=settings.jwt_issuer,
        audience=settings.audiences(),
        now=datetime.now(UTC),
    )


def machine() -> str:
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )


def print_table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n{title} — {machine()}\n")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value | note |\n|{'-' * (width + 2)}|-------|------|")
    for name, value, note in rows:
        print(f"| {name:<{width}} | {value} | {note} |")
