"""Prometheus metrics shared by every service. Labels are bounded: never a case or tip id.

Every metric any service exports, with who reads it, is in docs/metrics.md (a unit test keeps
the two in step). A service's own metrics live beside the code that owns what they count.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

HTTP_REQUESTS = Counter(
    "whistle_http_requests_total",
    "HTTP requests handled",
    ["service", "method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "whistle_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "route"],
)
EVENTS_CONSUMED = Counter(
    "whistle_events_consumed_total",
    "Events taken from Kafka, by outcome (processed, duplicate, ignored, dead_lettered)",
    ["service", "topic", "outcome"],
)
HANDLER_FAILURES = Counter(
    "whistle_event_handler_failures_total",
    "Event handler attempts that raised",
    ["service", "topic"],
)
DEPENDENCY_OUTAGES = Counter(
    "whistle_consumer_dependency_outages_total",
    "Event handling attempts that found the database or network unavailable (retried forever)",
    ["service"],
)
OUTBOX_PUBLISHED = Counter(
    "whistle_outbox_published_total",
    "Events published by the outbox relay",
    ["service", "topic"],
)
OUTBOX_REPUBLISHED = Counter(
    "whistle_outbox_republished_total",
    "Events the relay sent again because the broker no longer held them, by reason "
    "(log_truncated, partition_missing, offsets_went_back)",
    ["service", "topic", "reason"],
)
CONSUMER_REWOUND = Counter(
    "whistle_consumer_rewound_total",
    "Partitions read again from the beginning because the broker no longer held a record "
    "this consumer had read",
    ["service", "topic"],
)
CONSUMER_LAG = Gauge(
    "whistle_consumer_lag_events",
    "Events on the assigned partitions not yet processed, by the broker's log ends",
    ["service"],
)
CONSUMER_PARTITION_LAG = Gauge(
    "whistle_consumer_partition_lag_events",
    "Events not yet processed on one partition this process is assigned, by the broker's log "
    "end (whistle_consumer_lag_events is their sum)",
    ["service", "group", "topic", "partition"],
)
OUTBOX_UNSENT = Gauge(
    "whistle_outbox_unsent_events",
    "Events staged in the outbox and not yet acknowledged by the broker",
    ["service"],
)
OUTBOX_OLDEST_UNSENT_AGE = Gauge(
    "whistle_outbox_oldest_unsent_age_seconds",
    "How long the oldest unsent outbox event has waited, on the service's clock (0 when none)",
    ["service"],
)

RETENTION_REMOVED = Counter(
    "whistle_retention_removed",
    "Rows or files removed because their retention period ended (services/runtime/retention.py)",
    ["service", "what"],
)
RETENTION_LAST_RUN = Gauge(
    "whistle_retention_last_run_timestamp_seconds",
    "When the retention job last ran, on the service's clock",
    ["service"],
)

# What the inbox does with each event it takes (EVENTS_CONSUMED's outcome label). There is no
# dead-letter depth gauge: see docs/metrics.md, "Dead letters".
CONSUMED_OUTCOMES = ("processed", "duplicate", "ignored", "dead_lettered")


def after_commit(session: AsyncSession, action: Callable[[], None]) -> None:
    """Run ``action`` once the session's transaction commits, never if it rolls back: for a
    metric observed where the work is done, so that a retried transaction counts once."""
    sync = session.sync_session
    pending: list[Callable[[], None]] | None = sync.info.get(_AFTER_COMMIT)
    if pending is None:
        pending = sync.info[_AFTER_COMMIT] = []
        if not event.contains(sync, "after_commit", _run_after_commit):
            event.listen(sync, "after_commit", _run_after_commit)
            event.listen(sync, "after_rollback", _drop_after_commit)
    pending.append(action)


_AFTER_COMMIT = "whistle_after_commit"


def _run_after_commit(session: Session) -> None:
    for action in session.info.pop(_AFTER_COMMIT, []):
        action()


def _drop_after_commit(session: Session) -> None:
    session.info.pop(_AFTER_COMMIT, None)
