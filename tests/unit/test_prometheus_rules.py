"""The alert rules and the Prometheus configuration, checked by Prometheus' own promtool
(Debian's `prometheus` package, which `make test` installs): the shipped configuration and its
rules parse, every rule has unit tests in deploy/prometheus/tests, and they pass; and the
Alertmanager example, checked by amtool (Debian's `prometheus-alertmanager`)."""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.rules.yml"))
TEST_FILES = sorted((PROMETHEUS / "tests").glob("*.test.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=REPO)


def test_the_shipped_configuration_and_its_rules_pass_promtool() -> None:
    checked = _promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{len(RULE_FILES)} rule files found" in checked.stdout


def test_the_alert_rules_unit_tests_pass() -> None:
    assert TEST_FILES
    tested = _promtool("test", "rules", *map(str, TEST_FILES))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    assert alerts and alerts <= tested, f"no unit test: {sorted(alerts - tested)}"


def test_the_alertmanager_example_passes_amtool() -> None:
    config = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
    checked = subprocess.run(
        ["amtool", "check-config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    routes = yaml.safe_load(config.read_text())["route"]["routes"]
    assert any('severity="critical"' in r["matchers"] for r in routes)
