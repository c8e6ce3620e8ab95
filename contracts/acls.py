"""What each principal may do on the broker, from the topic registry: one principal per service
(it writes the topics it produces and the dead-letter topics of those it consumes, reads those
it consumes), one per county department (it reads its own topic and submits on the whistle,
referral and meeting topics), and one for the migration job (it creates the topics). Nothing else is
allowed.

``deploy/k8s/kafka-users.yaml`` (Strimzi ``KafkaUser``s) is generated from these rules by
``services/launcher/kafka_users.py``; docs/security.md says how to apply them elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.topics import (
    DEPARTMENT_CONSUMERS,
    DEPARTMENT_TOPIC_TEMPLATE,
    MEETINGS,
    REFERRALS,
    TOPICS,
    WHISTLES,
    BrokerDepartment,
    all_topic_names,
    consumer_group,
    dlq_topic,
)

Resource = Literal["topic", "group"]
Operation = Literal["Read", "Write", "Describe", "Create"]

READ: tuple[Operation, ...] = ("Read", "Describe")
WRITE: tuple[Operation, ...] = ("Write", "Describe")
# A producer's own topics: its outbox relay reads them back to check the broker kept them.
OWN: tuple[Operation, ...] = ("Read", "Write", "Describe")


@dataclass(frozen=True, order=True)
class Acl:
    resource: Resource
    name: str
    operations: tuple[Operation, ...]
    prefix: bool = False


def service_principal(service: str) -> str:
    return f"svc-{service}"


def department_principal(department: BrokerDepartment) -> str:
    """``dept-cgj`` for the default county's 城管局, ``dept-140998-cgj`` for another county's."""
    return f"dept-{department.name}"


MIGRATE_PRINCIPAL = "svc-migrate"


def department_group_prefix(department: BrokerDepartment) -> str:
    """The consumer groups a department's systems may use (``whistle dept-listen`` takes
    ``dept-<code>-listener``, ``dept-<county>-<code>-listener`` for another county's)."""
    return f"dept-{department.name}-"


def service_acls(service: str, departments: list[BrokerDepartment], group_prefix: str) -> list[Acl]:
    acls: set[Acl] = set()
    consumed: list[str] = []
    for topic in TOPICS:
        if topic.producer == service:
            acls.add(Acl("topic", topic.name, OWN))
        if service in topic.consumers:
            consumed.append(topic.name)
    if service == "escalation":  # it summons each department on the department's own topic
        acls.update(Acl("topic", d.topic, OWN) for d in departments)
    if service in DEPARTMENT_CONSUMERS:
        consumed += [d.topic for d in departments]
        # Subscribed by pattern: the metadata of every department topic, present or future.
        acls.add(Acl("topic", DEPARTMENT_TOPIC_TEMPLATE.split("{code}")[0], ("Describe",), True))
    for name in consumed:
        acls.add(Acl("topic", name, READ))
        acls.add(Acl("topic", dlq_topic(name), WRITE))  # where it parks what it cannot handle
    if consumed:
        acls.add(Acl("group", consumer_group(group_prefix, service), ("Read",)))
    return sorted(acls)


def department_acls(department: BrokerDepartment) -> list[Acl]:
    """A department reads its own county's topic only; it submits on the shared topics, where
    escalation checks its token's county against the case's (docs/scale.md)."""
    return [
        Acl("group", department_group_prefix(department), ("Read",), prefix=True),
        Acl("topic", department.topic, READ),
        Acl("topic", WHISTLES, WRITE),
        Acl("topic", REFERRALS, WRITE),  # 移送 from its own system
        Acl("topic", MEETINGS, WRITE),  # a joint meeting's decision reported done
    ]


def migrate_acls(departments: list[BrokerDepartment]) -> list[Acl]:
    return [Acl("topic", name, ("Create", "Describe")) for name in all_topic_names(departments)]
