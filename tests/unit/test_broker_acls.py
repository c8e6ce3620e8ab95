"""The broker's ACLs (contracts/acls.py, deploy/k8s/kafka-users.yaml): each principal may do
what its part of the registry says and nothing else — above all, nobody outside escalation may
write what escalation alone records, and a department reaches only its own topic."""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest
import yaml

from contracts.acls import (
    MIGRATE_PRINCIPAL,
    Acl,
    Operation,
    department_acls,
    department_principal,
    service_acls,
    service_principal,
)
from contracts.topics import (
    CASES,
    DEADLINES,
    LEADERSHIP,
    TIPS,
    WHISTLES,
    BrokerDepartment,
    department_topic,
)
from reference.county import load_counties
from services.launcher import kafka_users
from services.runtime.settings import SERVICES, Settings
from tests.unit.test_deploy_files import K8S, compose_service, k8s_documents

TAOLIN = "140998"
DEPARTMENTS = [
    BrokerDepartment("SCJGJ"),
    BrokerDepartment("CGJ"),
    BrokerDepartment("CGJ", TAOLIN),  # 桃林县's 城管局: the same code, another county
]


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
    return service_acls(service, DEPARTMENTS, "whistle")


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
    # Another county's department topics: escalation writes them, the ledger reads them.
    assert allowed(of("escalation"), "topic", department_topic("CGJ", TAOLIN), "Write")
    assert allowed(of("ledger"), "topic", department_topic("CGJ", TAOLIN), "Read")


def test_a_department_reads_its_own_topic_and_submits_on_the_whistle_topic_only() -> None:
    scjgj = department_acls(BrokerDepartment("SCJGJ"))
    assert allowed(scjgj, "topic", department_topic("SCJGJ"), "Read")
    assert allowed(scjgj, "group", "dept-scjgj-listener", "Read")
    assert allowed(scjgj, "topic", WHISTLES, "Write")
    assert not allowed(scjgj, "topic", department_topic("CGJ"), "Read")
    assert not allowed(scjgj, "group", "dept-cgj-listener", "Read")
    for topic in (TIPS, CASES, DEADLINES, LEADERSHIP):
        assert not allowed(scjgj, "topic", topic, "Write"), topic
    assert not allowed(scjgj, "topic", WHISTLES, "Read")


def test_a_countys_department_reads_its_countys_topic_not_the_other_countys_namesake() -> None:
    """Tenancy (docs/scale.md): two counties' 城管局 share the code CGJ; each is its own
    principal and reads only its own county's topic and consumer groups."""
    qingxi, taolin = BrokerDepartment("CGJ"), BrokerDepartment("CGJ", TAOLIN)
    assert (department_principal(qingxi), department_principal(taolin)) == (
        "dept-cgj",
        "dept-140998-cgj",
    )
    theirs = department_acls(taolin)
    assert allowed(theirs, "topic", "escalation.dept.140998.cgj.v1", "Read")
    assert allowed(theirs, "group", "dept-140998-cgj-listener", "Read")
    assert not allowed(theirs, "topic", "escalation.dept.cgj.v1", "Read")
    assert not allowed(theirs, "group", "dept-cgj-listener", "Read")
    ours = department_acls(qingxi)
    assert not allowed(ours, "topic", "escalation.dept.140998.cgj.v1", "Read")
    assert not allowed(ours, "group", "dept-140998-cgj-listener", "Read")
    users = _users()
    assert {"dept-cgj", "dept-140998-cgj"} <= set(users)


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


# --- Docker Compose: Apache Kafka with SASL, the same users and ACLs ----------------------------

COMPOSE_SETUP = kafka_users.COMPOSE_TARGET


def _kafka_property(variable: str) -> str:
    """The apache/kafka image's reading of a KAFKA_ variable: ___ is '-', __ is '_', _ is '.'."""
    name = variable.removeprefix("KAFKA_").lower()
    return (
        name.replace("___", "\0").replace("__", "\1").replace("_", ".").translate({0: "-", 1: "_"})
    )


def _broker_properties() -> dict[str, str]:
    env = compose_service("kafka")["environment"]
    return {_kafka_property(k): str(v) for k, v in env.items() if k.startswith("KAFKA_")}


def test_the_compose_broker_asks_everyone_who_they_are_and_allows_only_acls() -> None:
    properties = _broker_properties()
    protocols = dict(p.split(":") for p in properties["listener.security.protocol.map"].split(","))
    listeners = [entry.split(":")[0] for entry in properties["listeners"].split(",")]
    assert all(protocols[listener] == "SASL_PLAINTEXT" for listener in listeners)
    assert properties["authorizer.class.name"].endswith("StandardAuthorizer")
    assert properties["super.users"] == "User:admin"
    assert properties["allow.everyone.if.no.acl.found"] == "false"
    # Every listener has a login module for every mechanism it takes (a misspelt variable
    # would leave the broker unable to start or to take the services' SCRAM logins).
    for listener in listeners:
        mechanisms = (
            properties["sasl.enabled.mechanisms"].split(",")
            if listener != properties["controller.listener.names"]
            else [properties["sasl.mechanism.controller.protocol"]]
        )
        for mechanism in mechanisms:
            key = f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"
            assert key in properties, key
            module = (
                "scram.ScramLoginModule" if mechanism.startswith("SCRAM") else "PlainLoginModule"
            )
            assert module in properties[key], key


@pytest.mark.parametrize("name", [*SERVICES, "migrate"])
def test_each_compose_service_signs_in_as_its_own_user(name: str) -> None:
    env = compose_service(name)["environment"]
    principal = service_principal(name)
    variable = kafka_users.password_variable(principal)
    assert env["WHISTLE_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["WHISTLE_KAFKA_SASL_USERNAME"] == principal
    assert env["WHISTLE_KAFKA_SASL_PASSWORD"] == f"${{{variable}:?set {variable}}}"
    # kafka-setup makes that user with that same password.
    assert (
        compose_service("kafka-setup")["environment"][variable]
        == env["WHISTLE_KAFKA_SASL_PASSWORD"]
    )
    assert f'user {principal} "${{{variable}:?set {variable}}}"' in COMPOSE_SETUP.read_text()


def test_migrate_waits_for_the_users_and_acls() -> None:
    setup = compose_service("kafka-setup")
    assert compose_service("migrate")["depends_on"]["kafka-setup"] == {
        "condition": "service_completed_successfully"
    }
    assert setup["entrypoint"] == ["/bin/sh", "/whistle/kafka-setup.sh"]
    assert "./deploy/compose/kafka-setup.sh:/whistle/kafka-setup.sh:ro" in setup["volumes"]
    subprocess.run(["sh", "-n", str(COMPOSE_SETUP)], check=True)


def _granted(script: str) -> dict[str, set[Acl]]:
    """The ACLs the script's `allow` lines grant, read back as the authorizer would store them."""
    granted: dict[str, set[Acl]] = {}
    for line in script.splitlines():
        if not line.startswith("allow "):
            continue
        _, principal, *words = shlex.split(line)
        options: dict[str, list[str]] = {}
        for flag, value in zip(words[::2], words[1::2], strict=True):
            options.setdefault(flag, []).append(value)
        prefix = options.pop("--resource-pattern-type", ["literal"]) == ["prefixed"]
        operations = tuple(options.pop("--operation"))
        ((flag, names),) = options.items()
        resource = flag.removeprefix("--")
        assert resource in ("topic", "group"), line
        for name in names:
            granted.setdefault(principal, set()).add(
                Acl(resource, name, operations, prefix)  # type: ignore[arg-type]
            )
    return granted


def test_the_compose_setup_grants_exactly_the_rules_acls() -> None:
    departments = load_counties(Settings().config_dir).departments()
    rules = kafka_users.principals(departments, Settings().kafka_group_prefix)
    granted = _granted(COMPOSE_SETUP.read_text())
    assert granted == {principal: set(acls) for principal, acls, _ in rules}
