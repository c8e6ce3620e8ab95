"""The topic registry: every topic, who produces it, which events it carries and who consumes it.

``docs/topics.md`` is generated from it (``make contracts``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.envelope import EventData
from contracts.events import (
    CaseAccepted,
    CaseAdmissionDecided,
    CaseAdmissionProposed,
    CaseAssigned,
    CaseAssistanceRequested,
    CaseChased,
    CaseClosed,
    CaseContacted,
    CaseLegalReviewDecided,
    CaseLegalReviewRequested,
    CaseMerged,
    CaseOpened,
    CaseProgressRecorded,
    CaseReferred,
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
    InspectionTaskCompleted,
    InspectionTaskPlanned,
    LeadershipNotified,
    MeetingConvened,
    MeetingDecisionDone,
    MeetingDecisionRecorded,
    MeetingDecisionReported,
    MeetingDecisionReportSubmitted,
    MeetingHeld,
    MeetingSummoned,
    PersonalDataErased,
    ReferralSubmitted,
    StaffAssessed,
    TipFollowUpUnreachable,
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
REFERRALS = "dispatch.referrals.v1"
MEETINGS = "escalation.meetings.v1"
DEPARTMENT_TOPIC_TEMPLATE = "escalation.dept.{code}.v1"
COUNTY_DEPARTMENT_TOPIC_TEMPLATE = "escalation.dept.{county}.{code}.v1"
"""A department of any county but the default one (docs/scale.md, "Tenancy", decision 3):
departments of two counties share codes (both have a 城管局 ``CGJ``), so the county is in the
name; the default county's keep the name they had before tenancy."""
DLQ_SUFFIX = ".dlq"
SOURCE_TEMPLATE = "whistle/{producer}"
"""The CloudEvents ``source`` of every event a Whistle service produces."""


def producer_source(producer: str) -> str:
    """The ``source`` of the events ``producer`` (a service) puts on its topics."""
    return SOURCE_TEMPLATE.format(producer=producer)


@dataclass(frozen=True)
class Submitters:
    """Who outside Whistle may put some events on a topic, and how each proves who it is.

    A submission carries the submitter's own JWT in the Kafka header ``authorization``
    (``Bearer <jwt>``), verified as over HTTP: it must hold ``role`` and a ``<scope>:<code>``
    scope (or ``<scope>:*``) for the code the payload's ``field`` names; its CloudEvents
    ``source`` is ``source`` with that code lower-cased."""

    name: str
    messages: tuple[type[EventData], ...]
    role: str
    scope: str
    field: str
    source: str

    def source_for(self, code: str) -> str:
        return self.source.format(code=code.lower())

    def refusal(
        self, data: Mapping[str, Any], source: str, roles: Collection[str], scopes: Collection[str]
    ) -> str | None:
        """Why a verified token with ``roles`` and ``scopes`` may not submit ``data`` from
        ``source``; None if it may."""
        if self.role not in roles:
            return f"the token does not hold the role {self.role}"
        code = data.get(self.field)
        if not isinstance(code, str) or not code:
            return f"the submission names no {self.field}"
        if f"{self.scope}:{code}" not in scopes and f"{self.scope}:*" not in scopes:
            return f"the token does not act for {self.scope}:{code}"
        if source != self.source_for(code):
            return f"source {source} is not {self.source_for(code)}, the source of {code}"
        return None


HEADER_AUTHORIZATION = "authorization"
"""The Kafka header a submission from outside carries its ``Bearer <jwt>`` in."""

DEPARTMENTS = Submitters(
    "county departments",
    (WhistleReceiptSubmitted, WhistleReplySubmitted),
    role="county_department",
    scope="dept",
    field="department_code",
    source="whistle/dept/{code}",
)
"""The county departments' own systems, reporting in (报到) and replying to their whistles."""


DEPARTMENT_REFERRALS = Submitters(
    "county departments' referrals",
    (ReferralSubmitted,),
    role="county_department",
    scope="dept",
    field="department_code",
    source="whistle/dept/{code}",
)
"""The county departments' own systems, referring a township's matter to it (移送)."""


DEPARTMENT_DECISIONS = Submitters(
    "county departments' decision reports",
    (MeetingDecisionReportSubmitted,),
    role="county_department",
    scope="dept",
    field="department_code",
    source="whistle/dept/{code}",
)
"""The county departments' own systems, reporting a joint meeting's decision done (联席会议)."""


@dataclass(frozen=True)
class Topic:
    name: str
    producer: str
    description: str
    # What it carries: from the producer (its ``source`` is :func:`producer_source`), but for
    # the types its ``submitters`` send.
    messages: tuple[type[EventData], ...] = field(default=())
    # The services subscribed to it, each in its ``services/<service>/consumers.py``
    # (tests/unit/test_contracts.py holds the two together).
    consumers: tuple[str, ...] = field(default=())
    # Who outside Whistle may put some of its ``messages`` on it, and which.
    submitters: Submitters | None = None

    @property
    def source(self) -> str:
        return producer_source(self.producer)

    def submitted(self, event_type: str) -> Submitters | None:
        """The submitters an event type comes from on this topic, if it comes from outside."""
        if self.submitters and any(m.event_type == event_type for m in self.submitters.messages):
            return self.submitters
        return None


TOPICS: tuple[Topic, ...] = (
    Topic(
        TIPS,
        "intake",
        "Tips accepted from every channel, what citizens added to them, their ratings (回访, "
        "on every channel), the follow-up calls that could not reach them, and the erasure "
        "of their personal data. Key: tip id.",
        (TipReceived, TipSupplemented, TipRated, TipFollowUpUnreachable, PersonalDataErased),
        consumers=("dispatch", "ledger"),
    ),
    Topic(
        CASES,
        "dispatch",
        "The case lifecycle, from opening (or a department's referral, 移送) to closing "
        "(key: case id), a township unit's report that a joint meeting's decision it owns is "
        "done (联席会议; key: case id), townships' assessment opinions of seconded officers "
        "(双重考核; key: staff id), and units' inspection tasks planned and completed "
        "(综合查一次, 定岗巡查; key: task id).",
        (
            CaseReferred,
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
            CaseContacted,
            CaseMerged,
            CaseSplit,
            CaseAdmissionProposed,
            CaseAdmissionDecided,
            CaseLegalReviewRequested,
            CaseLegalReviewDecided,
            CaseAssistanceRequested,
            WhistleBlown,
            StaffAssessed,
            InspectionTaskPlanned,
            InspectionTaskCompleted,
            MeetingDecisionReported,
        ),
        consumers=("intake", "dispatch", "escalation", "ledger"),
    ),
    Topic(
        REFERRALS,
        "dispatch",
        "Referrals (移送) from the county departments' own systems (source `whistle/dept/<code>`, "
        "the department's token in the Kafka header `authorization`); dispatch opens the "
        "township's case from each, as `POST /v1/referrals` does. Key: referral id.",
        (ReferralSubmitted,),
        consumers=("dispatch", "ledger"),
        submitters=DEPARTMENT_REFERRALS,
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
        "from their own systems (source `whistle/dept/<code>`, the department's token in the "
        "Kafka header `authorization`) and as escalation records them. Key: case id.",
        (WhistleReceiptSubmitted, WhistleReplySubmitted, WhistleReported, WhistleReplied),
        consumers=("escalation", "ledger"),
        submitters=DEPARTMENTS,
    ),
    Topic(
        MEETINGS,
        "escalation",
        "The townships' joint meetings (联席会议): convened, held (attendance and minutes), "
        "their decisions (议定事项) and each reported done — as escalation records them, and the "
        "departments' reports as they submit them from their own systems (source "
        "`whistle/dept/<code>`, the department's token in the Kafka header `authorization`). "
        "Key: meeting id.",
        (
            MeetingConvened,
            MeetingHeld,
            MeetingDecisionRecorded,
            MeetingDecisionReportSubmitted,
            MeetingDecisionDone,
        ),
        # dispatch keeps the decisions its townships' units own, which they report through it
        consumers=("dispatch", "escalation", "ledger"),
        submitters=DEPARTMENT_DECISIONS,
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
    DeadlineRecomputed,
    MeetingSummoned,
    MeetingDecisionRecorded,
)
"""What a county department's own topic carries: its summons, and copies of the chases and
supervisions of its whistle clocks, of an extension that moved its reply clock and of a
provisional clock counted again once the calendar had its year (the originals are on
``escalation.deadlines.v1``); its summons to a joint meeting (联席会议), and a copy of each
decision of the meeting it owns (the original on ``escalation.meetings.v1``), whose chases and
supervisions are copied to it as a whistle's are."""

DEPARTMENT = "department"
"""A county department's own systems, as the consumer of its topic (``whistle dept-listen`` is
the example they copy)."""
DEPARTMENT_CONSUMERS: tuple[str, ...] = (DEPARTMENT, "ledger")
"""Who consumes each department's topic: that department, and the ledger."""


def code_pattern(template: str) -> str:
    """A regex for ``template`` (a topic name or a source) whatever its lower-cased ``{code}``:
    the characters a topic name may carry."""
    return re.escape(template).replace(re.escape("{code}"), r"[a-z0-9_.\-]+")


DEPARTMENT_TOPIC_PATTERN = code_pattern(DEPARTMENT_TOPIC_TEMPLATE)
"""Any county department's topic, whatever its code and county: another county's
``<county>.<code>`` is matched as a code with a dot in it."""


def registered(topic: str) -> Topic | None:
    """The registry's entry for a topic name, a department's topic (whatever its code)
    included; None for a name the registry does not know."""
    for known in TOPICS:
        if known.name == topic:
            return known
    if re.fullmatch(DEPARTMENT_TOPIC_PATTERN, topic):
        return Topic(topic, "escalation", "a county department's topic", DEPARTMENT_MESSAGES)
    return None


def admissible(topic: str, event_type: str, source: str) -> str | None:
    """Why an event of ``event_type`` from ``source`` may not be taken from ``topic``; None if
    it may. An event type arrives only on the topics the registry puts it on, from the topic's
    producer, or for a topic's submitters' types from a submitter's source (whose token the
    consumer checks next: :class:`Submitters`). Every consumer asks before it handles an event
    (``services/runtime/inbox.py``), so that whoever can write a topic cannot write history
    the topic does not carry."""
    entry = registered(topic)
    if entry is None:
        return f"{topic} is not a topic of the registry"
    submitters = entry.submitted(event_type)
    if submitters is not None:
        if not re.fullmatch(code_pattern(submitters.source), source):
            return f"source {source} is not one of the {submitters.name} ({submitters.source})"
        return None
    if not any(m.event_type == event_type for m in entry.messages):
        return f"{event_type} may not arrive on {topic}"
    if source != entry.source:
        return f"source {source} is not the producer of {topic} ({entry.source})"
    return None


def department_topic(code: str, county: str | None = None, default: str | None = None) -> str:
    """The topic a county department consumes for its own whistles and chases, in its county.

    The one rule naming it, from the department's ``code`` and its ``county``. The ``default``
    county's departments (and a department of no named county: a case escalation learnt no
    county for, a deployment before tenancy) keep ``escalation.dept.<code>.v1``, so that
    existing consumers and ACLs keep working; every other county's is
    ``escalation.dept.<county>.<code>.v1``."""
    if county is None or county == default:
        return DEPARTMENT_TOPIC_TEMPLATE.format(code=code.lower())
    return COUNTY_DEPARTMENT_TOPIC_TEMPLATE.format(county=county, code=code.lower())


@dataclass(frozen=True, order=True)
class BrokerDepartment:
    """A county department as the broker knows it: its code and, unless it is the default
    county's, its county (None: the default county's, whose names predate tenancy)."""

    code: str
    county: str | None = None

    @classmethod
    def of(cls, code: str, county: str | None, default: str | None) -> BrokerDepartment:
        return cls(code, None if county == default else county)

    @property
    def topic(self) -> str:
        return department_topic(self.code, self.county)

    @property
    def name(self) -> str:
        """Its lower-cased name in broker principals and consumer groups: ``cgj`` for the
        default county's, ``140998-cgj`` for another county's."""
        return self.code.lower() if self.county is None else f"{self.county}-{self.code.lower()}"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


DEFAULT_GROUP_PREFIX = "whistle"


def consumer_group(prefix: str, service: str) -> str:
    """The consumer group a service's replicas share; the broker's ACLs grant it by this name
    (``contracts/acls.py``)."""
    return f"{prefix}-{service}"


def topic_for(event_type: str) -> str:
    """The one registered topic that carries an event type. Events only addressed to a
    department (``whistle.whistle.notified``) have none: use :func:`department_topic`."""
    for topic in TOPICS:
        if any(m.event_type == event_type for m in topic.messages):
            return topic.name
    raise KeyError(f"no topic carries {event_type!r}")


def all_topic_names(departments: Collection[BrokerDepartment]) -> list[str]:
    """Every topic a deployment needs, dead-letter topics included."""
    names = [t.name for t in TOPICS] + [d.topic for d in departments]
    return names + [dlq_topic(n) for n in names]
