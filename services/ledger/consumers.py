"""What the ledger consumes: every topic of the registry and every county department's own
topic, and every event type on them, each recorded by the recorder (``recorder.py``).

The topics (``contracts/topics.py``): ``intake.tips.v1``, ``dispatch.cases.v1``,
``escalation.deadlines.v1``, ``escalation.whistles.v1``, ``escalation.leadership.v1`` and
``escalation.dept.<code>.v1`` for each department of the default county,
``escalation.dept.<county>.<code>.v1`` for each other county's; never a dead-letter topic
(``*.dlq``): what is there is a copy of an event already on its topic. The ledger does one
thing with each event, whatever its type: append it to the log and its Merkle tree; the KPI
facts it carries are derived in the same write (``projection.py``). The appends of a batch are
written once, just before its transaction commits (``before_commit``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from contracts.topics import (
    DEPARTMENT_MESSAGES,
    DEPARTMENT_TOPIC_PATTERN,
    TOPICS,
)
from services.ledger.recorder import Recorder
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime

TOPIC_PATTERN = (
    "^(?:" + "|".join([*(re.escape(t.name) for t in TOPICS), DEPARTMENT_TOPIC_PATTERN]) + ")$"
)
"""The registry's topics by name, and any department's topic."""

RECORDED_TYPES: tuple[str, ...] = tuple(
    dict.fromkeys(
        [m.event_type for topic in TOPICS for m in topic.messages]
        + [m.event_type for m in DEPARTMENT_MESSAGES]
    )
)
"""Every event type the registry puts on a topic, in the registry's order."""


def topics(department_topics: Iterable[str]) -> tuple[str, ...]:
    """The registry's topics, then each department's own."""
    return (*(t.name for t in TOPICS), *department_topics)


def subscription(runtime: Runtime, department_topics: Iterable[str]) -> Subscription:
    """The ledger's whole subscription; ``department_topics`` are every county's
    departments' (``contracts.topics.BrokerDepartment``)."""
    record = Recorder(runtime.clock)
    return Subscription(
        topics=topics(department_topics),
        # Subscribed by this pattern rather than by the list above, which only says what the
        # reference data held at start: dispatch reloads the reference data while it runs
        # (POST /v1/reference/reload, SIGHUP), so a department added since can be summoned, and
        # its topic appear, with the ledger running. The consumer joins a topic the pattern
        # matches at its next metadata refresh (aiokafka: every five minutes), from its first
        # event; a fixed list would miss it until the ledger restarts.
        pattern=TOPIC_PATTERN,
        handlers={event_type: record for event_type in RECORDED_TYPES},
        # Every event reaches the inbox's admission, which lets through only what the registry
        # says the topic carries, from its producer (a department's submission with a valid
        # token acting for it): the ledger records no forged history. The rest, a type this
        # build does not know included (a newer producer's event during an upgrade), is kept
        # in ``<topic>.dlq`` with the reason, to be replayed (``whistle dlq replay``) once the
        # ledger knows it; nothing passes unseen.
        any_type=record,
        verifier=runtime.verifier,
        before_commit=record.flush,
    )
