"""What every benchmark runs on: its own embedded PostgreSQL and Tansu broker on free loopback
ports, prepared as ``whistle up`` prepares them, in a temporary directory."""

from __future__ import annotations

import asyncio
import os
import platform
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.runtime.auth import ensure_dev_keys
from services.runtime.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.runtime.settings import SERVICES, Settings
from services.runtime.stack import EMBEDDED_GROUP_TIMING, prepare

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def embedded_stack() -> Iterator[tuple[Settings, Path]]:
    """Settings pointing at fresh servers, and the scratch directory they live in."""
    with tempfile.TemporaryDirectory(prefix="whistle-bench-") as tmp:
        root = Path(tmp)
        postgres = EmbeddedPostgres(root / "postgres" / "data", free_port())
        broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
        settings = Settings(
            home=root / "home",
            config_dir=REPO / "deploy" / "config",
            kafka_enable_idempotence=False,
            kafka_session_timeout_ms=EMBEDDED_GROUP_TIMING.session_timeout_ms,
            kafka_heartbeat_interval_ms=EMBEDDED_GROUP_TIMING.heartbeat_interval_ms,
            kafka_rebalance_timeout_ms=EMBEDDED_GROUP_TIMING.rebalance_timeout_ms,
            log_level="WARNING",
            **{f"{s}_port": free_port() for s in SERVICES},
        )
        try:
            settings.database_url = postgres.start()
            settings.kafka_bootstrap = broker.start()
            ensure_dev_keys(settings.private_key_path, settings.public_key_path)
            asyncio.run(prepare(settings))
            yield settings, root
        finally:
            broker.stop()
            postgres.stop()


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
