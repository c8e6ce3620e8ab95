"""Who a client is to the broker: SASL options from the settings, and every Kafka client the
services make carries them (a client built without them would connect anonymously and be
refused by a broker with ACLs — or, worse, accepted by one without)."""

from __future__ import annotations

import ast
import ssl

import pytest

from services.runtime.kafka import NO_AUTH, BrokerAuth
from services.runtime.settings import Settings
from tests.conftest import REPO

CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient"}


def test_a_broker_that_asks_nothing_gets_nothing() -> None:
    assert NO_AUTH.client_options() == {}
    assert Settings().broker_auth() == NO_AUTH


def test_a_service_principal_signs_in_with_scram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("WHISTLE_KAFKA_SASL_USERNAME", "whistle-intake")
    monkeypatch.setenv("WHISTLE_KAFKA_SASL_PASSWORD", "s3cret")

    assert Settings().broker_auth().client_options() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "whistle-intake",
        "sasl_plain_password": "s3cret",
    }


def test_over_tls_the_protocol_says_so_and_the_certificate_is_checked() -> None:
    options = BrokerAuth(mechanism="SCRAM-SHA-256", username="u", password="p", tls=True)
    sasl = options.client_options()
    assert sasl["security_protocol"] == "SASL_SSL"
    assert isinstance(sasl["ssl_context"], ssl.SSLContext)
    assert sasl["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert BrokerAuth(tls=True).client_options()["security_protocol"] == "SSL"


def test_an_unknown_mechanism_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHISTLE_KAFKA_SASL_MECHANISM", "GSSAPI")
    with pytest.raises(ValueError, match="kafka_sasl_mechanism"):
        Settings()


def test_a_mechanism_without_its_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="user name and a password"):
        BrokerAuth(mechanism="PLAIN", username="u").client_options()


def _clients_without_auth() -> list[str]:
    missing = []
    for path in sorted((REPO / "services").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in CLIENTS:
                continue
            spread = [k.value for k in node.keywords if k.arg is None]
            if not any(
                isinstance(value, ast.Call)
                and getattr(value.func, "attr", None) == "client_options"
                for value in spread
            ):
                missing.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    return missing


def test_every_kafka_client_the_services_make_carries_the_broker_auth() -> None:
    assert _clients_without_auth() == []
