"""The broker's ACLs (contracts/acls.py, deploy/k8s/kafka-users.yaml): each principal may do
what its part of the registry says and nothing else — above all, nobody outside escalation may
write what escalation alone records, and a department reaches only its own topic."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from contracts.acls import (
    MIGRATE_PRINCIPAL,
    Acl,
    Operation,
    department_acls,
    service_acls,
    service_principal,
)
from contracts.topics import CASES, DEADLINES, LEADERSHIP, TIPS, WHISTLES, department_topic
from services.launcher import kafka_users
from services.runtime.settings import SERVICES
from tests.unit.test_deploy_files import K8S, k8s_documents

CODES = ["SCJGJ", "CGJ"]


def allowed(acls: list[Acl], resource: str, name: str, operation: Operation) -> bool:
    """How Kafka's authorizer reads them: a literal names one resource, a prefix all that
    start with it."""
    return any(
        acl.resource == resource
        and operation in acl.operations
        and (name.startswith(acl.name) if acl.prefix else name == acl.name)
        for acl in acls
    )


def of(service: str) -> list[Acl]:
    return service_acls(service, CODES, "whistle")


def test_each_service_writes_only_the_topics_it_produces_and_its_dead_letters() -> None:
    assert allowed(of("intake"), "topic", TIPS, "Write")
    assert not allowed(of("intake"), "topic", CASES, "Write")
    assert not allowed(of("intake"), "topic", WHISTLES, "Write")
    assert allowed(of("intake"), "topic", f"{CASES}.dlq", "Write")
    assert allowed(of("dispatch"), "topic", CASES, "Write")
    assert not allowed(of("dispatch"), "topic", DEADLINES, "Write")
    for service in ("intake", "dispatch", "ledger"):
        # A forged whistle.case.resolved or 报到 cannot even reach the topic from them.
        assert not allowed(of(service), "topic", WHISTLES, "Write"), service
        assert not allowed(of(service), "topic", department_topic("SCJGJ"), "Write"), service
    assert not any(
        "Write" in acl.operations for acl in of("ledger") if not acl.name.endswith(".dlq")
    )


def test_each_service_reads_what_it_consumes_and_what_it_produces() -> None:
    assert allowed(of("dispatch"), "topic", TIPS, "Read")
    assert allowed(of("dispatch"), "group", "whistle-dispatch", "Read")
    assert not allowed(of("dispatch"), "group", "whistle-ledger", "Read")
    assert not allowed(of("dispatch"), "topic", LEADERSHIP, "Read")
    assert allowed(of("ledger"), "topic", department_topic("CGJ"), "Read")
    # The outbox relay reads its own topics back after a broker loss.
    assert allowed(of("escalation"), "topic", department_topic("SCJGJ"), "Read")


def test_a_department_reads_its_own_topic_and_submits_on_the_whistle_topic_only() -> None:
    scjgj = department_acls("SCJGJ")
    assert allowed(scjgj, "topic", department_topic("SCJGJ"), "Read")
    assert allowed(scjgj, "group", "dept-scjgj-listener", "Read")
    assert allowed(scjgj, "topic", WHISTLES, "Write")
    assert not allowed(scjgj, "topic", department_topic("CGJ"), "Read")
    assert not allowed(scjgj, "group", "dept-cgj-listener", "Read")
    for topic in (TIPS, CASES, DEADLINES, LEADERSHIP):
        assert not allowed(scjgj, "topic", topic, "Write"), topic
    assert not allowed(scjgj, "topic", WHISTLES, "Read")


def test_the_kafka_users_file_is_what_the_rules_generate() -> None:
    assert kafka_users.main(["--check"]) == 0


def _users() -> dict[str, dict[str, Any]]:
    documents = yaml.safe_load_all((K8S / "kafka-users.yaml").read_text())
    return {d["metadata"]["name"]: d for d in documents}


def test_the_file_has_a_user_per_service_department_and_the_migrate_job() -> None:
    users = _users()
    assert {service_principal(s) for s in SERVICES} | {MIGRATE_PRINCIPAL} <= set(users)
    assert "dept-scjgj" in users
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
        assert user["spec"]["authorization"]["acls"]


@pytest.mark.parametrize("workload", [*SERVICES, "migrate"])
def test_each_pod_signs_in_as_its_own_user_with_the_password_strimzi_made(workload: str) -> None:
    containers = [
        container
        for _, document in k8s_documents()
        if document["kind"] in ("Deployment", "Job")
        for container in document["spec"]["template"]["spec"]["containers"]
        if container["command"][-1] == workload
    ]
    assert len(containers) == 1
    env = {e["name"]: e for e in containers[0]["env"]}
    user = env["WHISTLE_KAFKA_SASL_USERNAME"]["value"]
    assert user == f"svc-{workload}" and user in _users()
    secret = env["WHISTLE_KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": user, "key": "password"}
