"""The dashboards and alerts against the real thing: Debian's Prometheus, configured as
``whistle up --monitoring`` configures it, scrapes the four running services after a few tips,
and every panel query of every dashboard and every alert expression is evaluated through its
HTTP API. A panel whose query returns nothing on a busy stack is a broken panel; an alert that
reads a series the services do not export can never fire."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.launcher.embedded import free_port
from services.launcher.monitoring import EmbeddedPrometheus, scrape_config, write_kpi_token
from services.runtime.settings import Settings
from tests.conftest import REPO, TokenFactory
from tests.support.infra import eventually
from tests.support.journey import case_of, submit
from tests.support.stack import ServiceProcesses

pytestmark = pytest.mark.e2e

RULES = REPO / "deploy" / "prometheus" / "rules"
DASHBOARDS = sorted((REPO / "deploy" / "grafana" / "dashboards").glob("*.json"))
# What Grafana puts in for its variables, as a dashboard opened over the last hour would.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$service": ".*",
}
# Words in PromQL that look like metric names but are not: keywords, and the aggregations
# (which may take `by (…)` before their parenthesis).
PROMQL_WORDS = {"by", "without", "and", "or", "unless", "offset", "bool", "on", "ignoring"}
AGGREGATIONS = {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk"}
AGGREGATIONS |= {"bottomk", "quantile", "count_values"}


@pytest.fixture(scope="module")
def prometheus(
    services: ServiceProcesses, migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedPrometheus]:
    port = free_port()
    home = tmp_path_factory.mktemp("prometheus")
    write_kpi_token(migrated, home / "kpi-token", datetime.now(UTC))
    server = EmbeddedPrometheus(
        home,
        "127.0.0.1",
        port,
        scrape_config(
            migrated, rules=RULES, kpi_token=home / "kpi-token", scrape_seconds=1, port=port
        ),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _query(http: httpx.AsyncClient, prometheus: EmbeddedPrometheus, expr: str) -> Any:
    answer = await http.get(f"{prometheus.url}/api/v1/query", params={"query": expr})
    body = answer.json()
    assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def _panel_queries() -> list[tuple[str, str, str]]:
    queries = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        panels = list(dashboard["panels"])
        for panel in list(panels):
            panels.extend(panel.get("panels", []))  # rows that hold their panels
        for panel in panels:
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    for variable, value in GRAFANA_VARIABLES.items():
                        expr = expr.replace(variable, value)
                    queries.append((path.stem, panel["title"], expr))
    return queries


def _alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in sorted(RULES.glob("*.rules.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _series_read(expr: str) -> set[str]:
    """The metric names an expression reads (functions are followed by a parenthesis)."""
    without_strings = re.sub(r'"[^"]*"', "", expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    names = set(re.findall(r"\b([a-z_:][a-z0-9_:]*)\b(?!\s*\()", without_ranges))
    labels = set(re.findall(r"\b([a-z_]+)\s*(?:=~|!~|!=|=)", without_strings))
    grouped = {
        word
        for clause in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr)
        for word in re.findall(r"[a-z_]+", clause)
    }
    numbers = {name for name in names if name.isdigit()}
    return names - labels - grouped - PROMQL_WORDS - AGGREGATIONS - numbers


@pytest.fixture(scope="module")
async def loaded(
    services: ServiceProcesses,
    migrated: Settings,
    prometheus: EmbeddedPrometheus,
    token: TokenFactory,
) -> EmbeddedPrometheus:
    """A few tips all the way to a case, one case accepted by its unit and its citizen
    contacted (so the response rate has a denominator) and whistled to a department that
    reports in, then Prometheus has scraped every service since."""
    async with httpx.AsyncClient(timeout=10) as http:
        bodies = [
            {"text": "村口有人占道摆摊，车都过不去了", "grid_id": "T03V02G01"},
            {"text": "集市上卖菜的用鬼秤，短斤少两", "address": "城关镇十里铺村集市"},
            {"text": "楼下广场舞高音喇叭每天晚上十点还在放，太吵了", "grid_id": "T03V01G02"},
        ]
        cases = [await case_of(http, migrated, await submit(http, migrated, b)) for b in bodies]
        unit = {"authorization": f"Bearer {token('unit_member', 'unit:T03-CGJ')}"}
        case_url = f"{migrated.url_of('dispatch')}/v1/cases/{cases[0]}"

        async def assigned() -> str | None:
            answer = await http.get(case_url, headers=unit)
            return answer.headers.get("etag") if answer.status_code == 200 else None

        etag = await eventually(assigned, what="the first case assigned to its unit")
        accepted = await http.post(f"{case_url}/accept", headers={**unit, "If-Match": etag})
        assert accepted.status_code == 200, accepted.text
        # 响应率 counts the unit's contact with the citizen (联系群众), not the acceptance.
        accepted = await http.post(
            f"{case_url}/contact",
            headers={**unit, "If-Match": accepted.headers["etag"]},
            json={"contacted_at": datetime.now(UTC).isoformat(), "method": "phone"},
        )
        assert accepted.status_code == 200, accepted.text
        # The township whistles the market regulator in (吹哨), which reports in (报到): the
        # whistle panels and the on-time rates have something to show.
        township = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}
        whistled = await http.post(
            f"{case_url}/whistle",
            headers={**township, "If-Match": accepted.headers["etag"]},
            json={
                "departments": ["SCJGJ"],
                "reason_code": "needs_joint_action",
                "reason": "摊贩占道，需市场监管联合处置",
            },
        )
        assert whistled.status_code == 200, whistled.text
        department = {"authorization": f"Bearer {token('county_department', 'dept:SCJGJ')}"}
        whistles = f"{migrated.url_of('escalation')}/v1/whistles"

        async def summoned() -> str | None:
            answer = await http.get(
                whistles, params={"department": "SCJGJ", "state": "open"}, headers=department
            )
            found = answer.json()["whistles"] if answer.status_code == 200 else []
            return found[0]["whistle_id"] if found else None

        whistle_id = await eventually(summoned, what="the market regulator summoned")
        reported = await http.post(
            f"{whistles}/{whistle_id}/receipt", headers=department, json={"receipt_no": "SC-1"}
        )
        assert reported.status_code == 201, reported.text

        async def scraped() -> bool:
            up = await _query(http, prometheus, 'count(up{job="whistle"} == 1) == 4')
            handled = await _query(http, prometheus, "sum(whistle_events_consumed_total) > 0")
            counted = await _query(
                http,
                prometheus,
                'whistle_kpi_rate{group_by="department", rate="whistle_report_on_time_rate"}',
            )
            return bool(up and handled and counted)

        await eventually(scraped, within=30, what="Prometheus scraping four loaded services")
    return prometheus


def test_the_shipped_dashboards_have_queries() -> None:
    assert DASHBOARDS and _panel_queries()


@pytest.mark.parametrize("query", _panel_queries(), ids=lambda q: f"{q[0]}: {q[1]}")
async def test_every_dashboard_panel_shows_data_on_a_busy_stack(
    loaded: EmbeddedPrometheus, query: tuple[str, str, str]
) -> None:
    _, title, expr = query
    async with httpx.AsyncClient(timeout=10) as http:

        async def answered() -> Any:
            return await _query(http, loaded, expr)

        # rate() needs two scrapes inside its window: wait for them, not for a time.
        await eventually(answered, within=20, what=f"data for panel {title!r}: {expr}")


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda r: r["alert"])
async def test_every_alert_evaluates_and_reads_only_series_the_services_export(
    loaded: EmbeddedPrometheus, rule: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        await _query(http, loaded, rule["expr"])  # valid: Prometheus answers success
        for name in sorted(_series_read(rule["expr"])):
            exported = await _query(http, loaded, f'count({{__name__="{name}"}})')
            assert exported, f"{rule['alert']} reads {name}, which no service exports"


def test_the_scrape_configuration_passes_promtool(migrated: Settings, tmp_path: Path) -> None:
    import subprocess

    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(migrated, rules=RULES)))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
