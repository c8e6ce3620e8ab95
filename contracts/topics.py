"""The topic registry: every topic, who produces it, which events it carries and who consumes it.

``docs/topics.md`` is generated from it (``make contracts``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.envelope import EventData
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseChased,
    CaseClosed,
    CaseMerged,
    CaseOpened,
    CaseProgressRecorded,
    CaseRejected,
    CaseReopened,
    CaseResolved,
    CaseSplit,
    CaseStarted,
    CaseSupervised,
    CaseTriageRequired,
    DeadlineOverdue,
    DeadlineRecomputed,
    DeadlinesSet,
    DeadlineStopped,
    DeadlineWarning,
    ExtensionDecided,
    ExtensionRequested,
    LeadershipNotified,
    TipRated,
    TipReceived,
    TipSupplemented,
    WhistleBlown,
    WhistleNotified,
    WhistleReceiptSubmitted,
    WhistleReplied,
    WhistleReplySubmitted,
    WhistleReported,
)

TIPS = "intake.tips.v1"
CASES = "dispatch.cases.v1"
DEADLINES = "escalation.deadlines.v1"
WHISTLES = "escalation.whistles.v1"
LEADERSHIP = "escalation.leadership.v1"
DEPARTMENT_TOPIC_TEMPLATE = "escalation.dept.{code}.v1"
DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str
    description: str
    messages: tuple[type[EventData], ...] = field(default=())
    # The services subscribed to it, each in its ``services/<service>/consumers.py``
    # (tests/unit/test_contracts.py holds the two together).
    consumers: tuple[str, ...] = field(default=())


TOPICS: tuple[Topic, ...] = (
    Topic(
        TIPS,
        "intake",
        "Tips accepted from every channel, what citizens added to them, and their ratings. "
        "Key: tip id.",
        (TipReceived, TipSupplemented, TipRated),
        consumers=("dispatch", "ledger"),
    ),
    Topic(
        CASES,
        "dispatch",
        "The case lifecycle, from opening to closing. Key: case id.",
        (
            CaseOpened,
            CaseTriageRequired,
            CaseAssigned,
            CaseAccepted,
            CaseRejected,
            CaseStarted,
            CaseProgressRecorded,
            CaseResolved,
            CaseClosed,
            CaseReopened,
            CaseMerged,
            CaseSplit,
            WhistleBlown,
        ),
        consumers=("intake", "dispatch", "escalation", "ledger"),
    ),
    Topic(
        DEADLINES,
        "escalation",
        "Deadlines set, stopped and escalated (warning, overdue, 催办, 督办). Key: case id.",
        (
            DeadlinesSet,
            DeadlineStopped,
            DeadlineWarning,
            DeadlineOverdue,
            CaseChased,
            CaseSupervised,
            ExtensionRequested,
            ExtensionDecided,
            DeadlineRecomputed,
        ),
        consumers=("dispatch", "ledger"),
    ),
    Topic(
        WHISTLES,
        "escalation",
        "The whistle protocol (吹哨报到): receipts (报到) and replies, as departments submit them "
        "from their own systems and as escalation records them. Key: case id.",
        (WhistleReceiptSubmitted, WhistleReplySubmitted, WhistleReported, WhistleReplied),
        consumers=("escalation", "ledger"),
    ),
    Topic(
        LEADERSHIP,
        "escalation",
        "Supervised (督办) cases for county leadership. Key: case id.",
        (LeadershipNotified,),
        consumers=("ledger",),
    ),
)


DEPARTMENT_MESSAGES: tuple[type[EventData], ...] = (
    WhistleNotified,
    CaseChased,
    CaseSupervised,
    ExtensionDecided,
)
"""What a county department's own topic carries: its summons, and copies of the chases and
supervisions of its whistle clocks and of an extension that moved its reply clock (the
originals are on ``escalation.deadlines.v1``)."""

DEPARTMENT = "department"
"""A county department's own systems, as the consumer of its topic (``whistle dept-listen`` is
the example they copy)."""
DEPARTMENT_CONSUMERS: tuple[str, ...] = (DEPARTMENT, "ledger")
"""Who consumes each department's topic: that department, and the ledger."""


def department_topic(code: str) -> str:
    """The topic a county department consumes for its own whistles and chases."""
    return DEPARTMENT_TOPIC_TEMPLATE.format(code=code.lower())


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


def topic_for(event_type: str) -> str:
    """The one registered topic that carries an event type. Events only addressed to a
    department (``whistle.whistle.notified``) have none: use :func:`department_topic`."""
    for topic in TOPICS:
        if any(m.event_type == event_type for m in topic.messages):
            return topic.name
    raise KeyError(f"no topic carries {event_type!r}")


def all_topic_names(department_codes: list[str]) -> list[str]:
    """Every topic a deployment needs, dead-letter topics included."""
    names = [t.name for t in TOPICS] + [department_topic(c) for c in department_codes]
    return names + [dlq_topic(n) for n in names]
