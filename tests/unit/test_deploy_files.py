"""The deployment files a user runs: docker-compose.yml, Prometheus, Grafana and deploy/k8s."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.launcher import configmaps, dashboards
from services.runtime import metrics
from services.runtime.settings import SERVICES, Settings
from tests.unit.test_metrics_inventory import loaded_metric_objects

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
K8S = REPO / "deploy" / "k8s"
K8S_FILES = sorted(K8S.glob("*.yaml"))

# The series names prometheus_client exposes for one metric family, by its type.
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
}
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def default_port(service: str) -> int:
    return int(Settings.model_fields[f"{service}_port"].default)


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def compose_service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service: dict[str, Any] = services[name]
    return service


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def published_ports(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, from short ("8001:8001") or long syntax."""
    pairs = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            pairs.add((int(port["published"]), int(port["target"])))
        else:
            *host, container = str(port).split(":")
            pairs.add((int(host[-1]) if host else int(container), int(container.split("/")[0])))
    return pairs


def named_volume_mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Named volume → (mount path, read-only) for a compose service."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only", False))
        else:
            source, target, *options = str(volume).split(":")
            read_only = "ro" in options
        if source in (compose().get("volumes") or {}):
            mounts[source] = (target, read_only)
    return mounts


# --- docker-compose.yml ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
def test_compose_runs_each_service_on_its_published_port(name: str) -> None:
    service = compose_service(name)
    assert command_of(service) == ["whistle", "serve", name]
    port = default_port(name)
    assert (port, port) in published_ports(service)
    assert service["environment"]["WHISTLE_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_services_start_after_migrate_succeeded(name: str) -> None:
    depends_on = compose_service(name)["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", SERVICES)
def test_compose_healthcheck_asks_readyz_of_the_service(name: str) -> None:
    test = compose_service(name)["healthcheck"]["test"]
    text = " ".join(test) if isinstance(test, list) else test
    assert f"127.0.0.1:{default_port(name)}/readyz" in text


def test_compose_migrate_prepares_against_healthy_postgres_and_kafka() -> None:
    migrate = compose_service("migrate")
    assert "whistle migrate" in " ".join(command_of(migrate))
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    # kafka-setup runs once the broker is healthy, and makes migrate's user first.
    assert migrate["depends_on"]["kafka-setup"]["condition"] == "service_completed_successfully"
    assert compose_service("kafka-setup")["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "healthcheck" in compose_service("postgres")
    assert compose_service("kafka")["image"].startswith("apache/kafka:")
    assert compose_service("kafka")["environment"]["KAFKA_ADVERTISED_LISTENERS"] == (
        "SASL_PLAINTEXT://kafka:9092"
    )


@pytest.mark.parametrize("name", SERVICES)
def test_compose_services_see_the_keys_migrate_generates(name: str) -> None:
    migrate = compose_service("migrate")
    service = compose_service(name)
    env = service["environment"]
    assert env["WHISTLE_DATABASE_URL"] == migrate["environment"]["WHISTLE_DATABASE_URL"]
    assert env["WHISTLE_KAFKA_BOOTSTRAP"] == "kafka:9092"
    home = PurePosixPath(migrate["environment"]["WHISTLE_HOME"])
    writable = {v: path for v, (path, ro) in named_volume_mounts(migrate).items() if not ro}
    volume = next((v for v, path in writable.items() if PurePosixPath(path) == home), None)
    assert volume, "migrate must write WHISTLE_HOME to a named volume"
    mounted_at = PurePosixPath(named_volume_mounts(service)[volume][0])
    for key in ("WHISTLE_JWT_PUBLIC_KEY_FILE", "WHISTLE_CONTACT_KEY_FILE"):
        assert PurePosixPath(env[key]).is_relative_to(mounted_at), key
        assert env[key] == migrate["environment"][key]


# --- Prometheus -------------------------------------------------------------------------------


def test_prometheus_scrapes_every_service_metrics() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    scraped = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for name in SERVICES:
        assert f"{name}:{default_port(name)}" in scraped
    mounts = compose_service("prometheus")["volumes"]
    assert any(
        str(m).startswith("./deploy/prometheus/prometheus.yml:/etc/prometheus/") for m in mounts
    )


# --- Grafana ----------------------------------------------------------------------------------


def exposed_series() -> dict[str, MetricWrapperBase]:
    """Every series name the services expose (shared metrics in services/runtime/metrics.py,
    a service's own in its modules, the ledger's KPI gauges) → the metric object it comes
    from."""
    for service in SERVICES:
        importlib.import_module(f"services.{service}.app")
    series = {}
    for value in loaded_metric_objects().values():
        for family in value.describe():
            for suffix in SERIES_SUFFIXES[family.type]:
                series[family.name + suffix] = value
    return series


def queries(dashboard: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("expr", "definition", "query") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(dashboard)
    return found


def test_grafana_dashboards_use_only_metrics_the_services_export() -> None:
    assert DASHBOARDS, "no dashboard under deploy/grafana/dashboards"
    series = exposed_series()
    assert series, "services/runtime/metrics.py defines no metrics"
    used: set[str] = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        exprs = queries(dashboard)
        assert exprs, f"{path.name} has no queries"
        for expr in exprs:
            # Label values ("whistle_report_on_time_rate") are not metric names.
            unquoted = re.sub(r'"[^"]*"', "", expr)
            names = {n for n in METRIC_NAME.findall(unquoted) if n.startswith("whistle_")}
            unknown = names - series.keys()
            assert not unknown, f"{path.name}: unknown metric(s) {sorted(unknown)} in {expr!r}"
            used |= names
    shown = {series[name] for name in used}
    for wanted in (
        metrics.HTTP_REQUESTS,
        metrics.HTTP_LATENCY,
        metrics.EVENTS_CONSUMED,
        metrics.OUTBOX_PUBLISHED,
    ):
        assert wanted in shown, f"no dashboard shows {wanted.describe()[0].name}"
    assert any(
        "dead_lettered" in expr
        for path in DASHBOARDS
        for expr in queries(json.loads(path.read_text()))
    ), "no dashboard shows dead-lettered events"


def test_the_dashboards_are_what_their_code_generates() -> None:
    assert {path.stem for path in DASHBOARDS} == set(dashboards.DASHBOARDS)
    assert dashboards.main(["--check"]) == 0


def test_the_configmaps_carry_the_reference_data_of_deploy_config() -> None:
    # A catalogue changed without regenerating would reach a cluster stale.
    for _, directory, manifest in configmaps.CONFIGMAPS:
        data = yaml.safe_load(manifest.read_text(encoding="utf-8"))["data"]
        assert data == configmaps.files_of(directory), manifest.name
    assert configmaps.main(["--check"]) == 0


def test_grafana_is_provisioned_with_the_dashboards_and_prometheus() -> None:
    grafana = compose_service("grafana")
    env = grafana["environment"]
    assert str(env["GF_AUTH_ANONYMOUS_ENABLED"]).lower() == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    mounts = dict(str(m).split(":")[:2] for m in grafana["volumes"] if str(m).startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"

    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/whistle.yml").read_text())
    paths = {p["options"]["path"] for p in providers["providers"]}
    assert mounts["./deploy/grafana/dashboards"] in paths

    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uids = {s["uid"] for s in sources["datasources"] if s["type"] == "prometheus"}
    assert any(s["url"] == "http://prometheus:9090" for s in sources["datasources"])
    for path in DASHBOARDS:
        text = path.read_text()
        referenced = set(re.findall(r'"type":\s*"prometheus",\s*"uid":\s*"([^"]+)"', text))
        assert referenced and referenced <= uids, path.name


# --- Kubernetes -------------------------------------------------------------------------------


@cache
def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for path in K8S_FILES:
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path.name, document))
    return documents


def test_k8s_manifests_parse_and_name_their_kind() -> None:
    assert K8S_FILES
    for filename, document in k8s_documents():
        assert isinstance(document, dict), filename
        assert document.get("apiVersion") and document.get("kind"), filename
        if document["kind"] != "Kustomization":
            assert document["metadata"]["name"], filename


def test_k8s_kustomization_lists_existing_files_and_no_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    kinds = {
        document["kind"]
        for filename, document in k8s_documents()
        if filename in kustomization["resources"]
    }
    assert "Secret" not in kinds, "real secrets are created with kubectl, not applied from git"
    for _, document in k8s_documents():
        if document["kind"] == "Secret":
            assert not document.get("data"), "Secret manifests hold placeholders only"
            assert all("REPLACE" in v for v in document["stringData"].values())


def test_k8s_deployments_have_readiness_and_liveness_probes() -> None:
    deployments = {
        document["metadata"]["name"]: document
        for _, document in k8s_documents()
        if document["kind"] == "Deployment"
    }
    assert deployments
    for name, deployment in deployments.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
            assert container["resources"]["requests"] and container["resources"]["limits"], name


@pytest.mark.parametrize("name", SERVICES)
def test_k8s_runs_each_service(name: str) -> None:
    deployments = [
        document
        for _, document in k8s_documents()
        if document["kind"] == "Deployment"
        and any(
            c.get("command", []) + c.get("args", []) == ["whistle", "serve", name]
            for c in document["spec"]["template"]["spec"]["containers"]
        )
    ]
    assert len(deployments) == 1, f"one Deployment must run `whistle serve {name}`"
    (container,) = deployments[0]["spec"]["template"]["spec"]["containers"]
    assert default_port(name) in {p["containerPort"] for p in container["ports"]}
    assert deployments[0]["spec"]["replicas"] >= 2
    services = [
        document
        for _, document in k8s_documents()
        if document["kind"] == "Service"
        and document["spec"]["selector"].items()
        <= deployments[0]["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert services, f"no Service selects the {name} pods"


# --- production: no development secret, nothing open beyond the host ---------------------------

CHANNEL_SECRETS = (
    "WHISTLE_WECHAT_TOKEN",
    "WHISTLE_WECHAT_APP_ID",
    "WHISTLE_WECHAT_ENCODING_AES_KEY",
    "WHISTLE_OPEN311_API_KEYS",
    "WHISTLE_ACCESS_CODE_KEY",
)
REQUIRED_FROM_ENVIRONMENT = re.compile(r"^\$\{(\w+):\?[^}]+\}$")


@pytest.mark.parametrize("name", [*SERVICES, "migrate"])
def test_compose_runs_in_production(name: str) -> None:
    assert compose_service(name)["environment"]["WHISTLE_ENV"] == "production"


def test_compose_intake_takes_the_channel_secrets_from_the_environment_without_default() -> None:
    env = compose_service("intake")["environment"]
    for variable in CHANNEL_SECRETS:
        required = REQUIRED_FROM_ENVIRONMENT.match(str(env.get(variable, "")))
        assert required and required.group(1) == variable, variable
    for name in ("dispatch", "escalation", "ledger"):
        assert not set(CHANNEL_SECRETS) & compose_service(name)["environment"].keys(), name


def test_intake_takes_only_encrypted_wechat_callbacks_in_compose_and_k8s() -> None:
    """Production refuses to start without safe mode (development_defaults)."""
    assert compose_service("intake")["environment"]["WHISTLE_WECHAT_SAFE_MODE"] == "true"
    env = {e["name"]: e for e in k8s_container("intake").get("env", [])}
    assert env["WHISTLE_WECHAT_SAFE_MODE"]["value"] == "true"


def test_compose_mounts_the_jwt_private_key_into_no_service() -> None:
    migrate = compose_service("migrate")
    private = PurePosixPath(migrate["environment"]["WHISTLE_JWT_PRIVATE_KEY_FILE"])
    issuer_volumes = {
        volume
        for volume, (path, _) in named_volume_mounts(migrate).items()
        if private.is_relative_to(path)
    }
    assert issuer_volumes, "the issuer's private key must lie on a volume migrate mounts"
    home = PurePosixPath(migrate["environment"]["WHISTLE_HOME"])
    assert not private.is_relative_to(home), "the services mount WHISTLE_HOME"
    for name in SERVICES:
        service = compose_service(name)
        assert "WHISTLE_JWT_PRIVATE_KEY_FILE" not in service["environment"], name
        assert not issuer_volumes & named_volume_mounts(service).keys(), name
    # An installation from before keeps its key: migrate moves it off the shared volume.
    script = " ".join(command_of(migrate))
    assert f"{home}/keys/jwt-ed25519.pem" in script and "mv" in script


def test_compose_publishes_ports_on_the_loopback_only() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this host"


def test_compose_grafana_admin_password_has_no_default() -> None:
    password = str(compose_service("grafana")["environment"]["GF_SECURITY_ADMIN_PASSWORD"])
    required = REQUIRED_FROM_ENVIRONMENT.match(password)
    assert required and required.group(1) == "GRAFANA_ADMIN_PASSWORD"


def k8s_container(name: str) -> dict[str, Any]:
    for _, document in k8s_documents():
        if document["kind"] == "Deployment":
            for container in document["spec"]["template"]["spec"]["containers"]:
                if container.get("command") == ["whistle", "serve", name]:
                    return dict(container)
    raise AssertionError(f"no Deployment runs {name}")


def test_k8s_runs_in_production() -> None:
    (env,) = [d for _, d in k8s_documents() if d.get("metadata", {}).get("name") == "whistle-env"]
    assert env["data"]["WHISTLE_ENV"] == "production"


def test_k8s_gives_intake_alone_the_channel_secrets_from_a_secret() -> None:
    secrets = {
        document["metadata"]["name"]: document["stringData"]
        for _, document in k8s_documents()
        if document["kind"] == "Secret"
    }
    env = {e["name"]: e for e in k8s_container("intake").get("env", [])}
    for variable in CHANNEL_SECRETS:
        reference = env[variable]["valueFrom"]["secretKeyRef"]
        assert reference["key"] in secrets[reference["name"]], variable
    for name in ("dispatch", "escalation", "ledger"):
        names = {e["name"] for e in k8s_container(name).get("env", [])}
        assert not set(CHANNEL_SECRETS) & names, name


def test_k8s_ledger_signs_with_a_key_it_is_given() -> None:
    container = k8s_container("ledger")
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    key = PurePosixPath(env["WHISTLE_LEDGER_SIGNING_KEY_FILE"])
    mounts = {PurePosixPath(m["mountPath"]) for m in container["volumeMounts"]}
    assert key.parent in mounts
