"""Session-wide real infrastructure: an embedded PostgreSQL server and a Tansu broker.

Both are started once per test session on free loopback ports, from the same code that
``whistle up`` uses. Tests isolate themselves with their own databases and topic names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.launcher.embedded import free_port
from services.launcher.stack import EMBEDDED_GROUP_TIMING, prepare
from services.runtime.auth import ensure_dev_keys, issue_token
from services.runtime.settings import Settings
from tests.support.groups import group_leaves_in_turn
from tests.support.infra import Infra, embedded_servers

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _groups_leave_in_turn() -> Iterator[None]:
    """In-process consumers of one group leave it one at a time (tests/support/groups.py)."""
    with group_leaves_in_turn():
        yield


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with embedded_servers(tmp_path_factory.mktemp("infra")) as servers:
        yield servers


@pytest.fixture(scope="session")
def settings(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for services under test, pointed at the session's PostgreSQL and broker."""
    home = tmp_path_factory.mktemp("home")
    configured = Settings(
        home=home,
        config_dir=REPO / "deploy" / "config",
        database_url=infra.database_url,
        kafka_bootstrap=infra.bootstrap,
        kafka_enable_idempotence=False,
        kafka_session_timeout_ms=EMBEDDED_GROUP_TIMING.session_timeout_ms,
        kafka_heartbeat_interval_ms=EMBEDDED_GROUP_TIMING.heartbeat_interval_ms,
        kafka_rebalance_timeout_ms=EMBEDDED_GROUP_TIMING.rebalance_timeout_ms,
        outbox_poll_seconds=0.05,
        # Every test reaches intake from 127.0.0.1, one allowance for the whole suite: limits
        # are tested on their own (tests/integration/test_rate_limits.py), with small ones.
        rate_limit_tips_per_address_per_hour=100_000,
        rate_limit_lookups_per_address_per_hour=100_000,
        consumer_retry_backoff_seconds=0.01,
        # Tests of every module send tips to the same few places, and merging near-duplicates
        # would join them to one another's cases; the merging tests set their own window.
        merge_window_hours=0,
        intake_port=free_port(),
        dispatch_port=free_port(),
        escalation_port=free_port(),
        ledger_port=free_port(),
    )
    ensure_dev_keys(configured.private_key_path, configured.public_key_path)
    return configured


@pytest.fixture(scope="session")
async def migrated(settings: Settings) -> Settings:
    """The session's servers with every service's database, migrations and topics in place."""
    await prepare(settings)
    return settings


TokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def token(settings: Settings) -> TokenFactory:
    """``token("dispatcher", "township:T01")``: a bearer token signed with the test keys;
    ``subject="S0089"`` for a staff member of the reference data (an officer whose 执法证 a
    step on the ground records), else ``test-<role>``."""

    def make(role: str, *scopes: str, subject: str | None = None) -> str:
        return issue_token(
            settings.private_key_path.read_bytes(),
            subject=subject or f"test-{role}",
            roles=[role],
            scopes=list(scopes),
            issuer=settings.jwt_issuer,
            audience=settings.audiences(),
            now=datetime.now(UTC),
        )

    return make
