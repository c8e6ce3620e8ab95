"""Prometheus metrics shared by every service. Labels are bounded: never a case or tip id."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
