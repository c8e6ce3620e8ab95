"""The Grafana dashboards, as code (grafana-foundation-sdk, Grafana Labs' own builders: typed,
generated from Grafana's schemas, so a panel option Grafana does not know does not build).

One dashboard per audience, written to ``deploy/grafana/dashboards/``:

* ``operations``: the services, HTTP, events, consumers, outboxes, dead letters — whoever keeps
  Whistle running;
* ``supervision``: cases, deadlines and the escalation ladder as the county oversees them;
* ``ledger``: the tamper-evident log, for auditors.

``python -m services.launcher.dashboards`` writes them (``make contracts`` does); ``--check``
writes nothing and exits 1 if a checked-in file differs. Every query is evaluated against a real
Prometheus scraping the loaded services in ``tests/e2e/test_monitoring.py``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueGraphMode, LegendDisplayMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, VariableRefresh

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "deploy" / "grafana" / "dashboards"
# The datasource deploy/grafana/provisioning/datasources/prometheus.yml provisions.
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="prometheus")
SERVICE = 'service=~"$service"'
NOT_PROBES = 'route!~"/healthz|/readyz"'


def _query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(PROMETHEUS)
    )


def _over(
    metric: str, *matchers: str, by: str = "", fn: str = "rate", window: str = "$__rate_interval"
) -> str:
    """``sum [by (…)] (fn(metric{service=~"$service", …}[window]))``."""
    selector = ", ".join([SERVICE, *matchers])
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({metric}{{{selector}}}[{window}]))"


def _series(
    title: str, description: str, unit: str, *queries: prometheus.Dataquery
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .datasource(PROMETHEUS)
        .height(8)
        .span(12)
        .fill_opacity(10)
        .legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .show_legend(True)
            .calcs(["mean", "max"])
        )
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel


def _stat(title: str, description: str, expr: str, unit: str = "short") -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .unit(unit)
        .decimals(0)
        .datasource(PROMETHEUS)
        .graph_mode(BigValueGraphMode.NONE)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        .height(4)
        .span(6)
        .with_target(_query(expr))
    )


def _service_variable() -> dashboard.QueryVariable:
    return (
        dashboard.QueryVariable("service")
        .label("Service")
        .datasource(PROMETHEUS)
        .query("label_values(whistle_http_requests_total, service)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def _base(uid: str, title: str, description: str) -> dashboard.Dashboard:
    return (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["whistle"])
        .editable()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
    )


def operations() -> dashboard.Dashboard:
    return (
        _base(
            "whistle-operations",
            "Whistle operations",
            "The four services as whoever keeps them running sees them: up, HTTP, events, "
            "consumers, outboxes and dead letters.",
        )
        .with_variable(_service_variable())
        .with_panel(
            _stat(
                "Services up",
                "Whistle service instances Prometheus can scrape (4 when everything runs).",
                'sum(up{job="whistle"})',
            )
        )
        .with_panel(
            _stat(
                "Dead-lettered events",
                "Events parked in a dead-letter topic in the time range (whistle dlq list).",
                _over(
                    "whistle_events_consumed_total",
                    'outcome="dead_lettered"',
                    fn="increase",
                    window="$__range",
                ),
            )
        )
        .with_panel(
            _stat(
                "Handler failures",
                "Event handler attempts that raised in the time range.",
                _over("whistle_event_handler_failures_total", fn="increase", window="$__range"),
            )
        )
        .with_panel(
            _stat(
                "HTTP 5xx responses",
                "Server errors in the time range.",
                # No 5xx series at all means none was answered: 0, not "No data".
                _over(
                    "whistle_http_requests_total", 'status=~"5.."', fn="increase", window="$__range"
                )
                + " or vector(0)",
            )
        )
        .with_row(dashboard.Row("HTTP"))
        .with_panel(
            _series(
                "Request rate by service and route",
                "Requests per second per route template; /healthz and /readyz probes left out.",
                "reqps",
                _query(
                    _over("whistle_http_requests_total", NOT_PROBES, by="service, route"),
                    "{{service}} {{route}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Latency p95 by service and route",
                "95th percentile of request duration.",
                "s",
                _query(
                    "histogram_quantile(0.95, "
                    + _over(
                        "whistle_http_request_duration_seconds_bucket",
                        NOT_PROBES,
                        by="service, route, le",
                    )
                    + ")",
                    "{{service}} {{route}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Responses by service and status",
                "Responses per second by HTTP status.",
                "reqps",
                _query(
                    _over("whistle_http_requests_total", NOT_PROBES, by="service, status"),
                    "{{service}} {{status}}",
                ),
            )
        )
        .with_row(dashboard.Row("Events"))
        .with_panel(
            _series(
                "Events consumed by outcome",
                "processed, duplicate (dropped by the inbox), ignored, dead_lettered.",
                "ops",
                _query(
                    _over("whistle_events_consumed_total", by="service, outcome"),
                    "{{service}} {{outcome}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Dead-lettered events by topic",
                "Events parked per topic; 0 on a healthy system.",
                "short",
                _query(
                    _over(
                        "whistle_events_consumed_total",
                        'outcome="dead_lettered"',
                        by="service, topic",
                        fn="increase",
                    ),
                    "{{service}} {{topic}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Handler failures by topic",
                "Handler attempts that raised, per second; retried, then dead-lettered.",
                "ops",
                _query(
                    _over("whistle_event_handler_failures_total", by="service, topic"),
                    "{{service}} {{topic}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Consumer lag",
                "Events on the assigned partitions not yet processed.",
                "short",
                _query(
                    f"sum by (service) (whistle_consumer_lag_events{{{SERVICE}}})", "{{service}}"
                ),
            )
        )
        .with_panel(
            _series(
                "Consumer lag by partition",
                "Per consumer group and partition: which partition a stuck consumer is stuck on.",
                "short",
                _query(
                    f"sum by (group, topic, partition) "
                    f"(whistle_consumer_partition_lag_events{{{SERVICE}}})",
                    "{{group}} {{topic}}[{{partition}}]",
                ),
            )
        )
        .with_panel(
            _series(
                "Database and broker outages met",
                "Event handling attempts that found PostgreSQL or the broker away (retried "
                "until they return); 0 on a healthy system.",
                "short",
                _query(
                    _over("whistle_consumer_dependency_outages_total", by="service", fn="increase"),
                    "{{service}}",
                ),
            )
        )
        .with_row(dashboard.Row("Outboxes"))
        .with_panel(
            _series(
                "Outbox backlog",
                "Events committed and not yet acknowledged by the broker, and how long the oldest "
                "has waited: every consumer is at least that far behind.",
                "short",
                _query(
                    f"sum by (service) (whistle_outbox_unsent_events{{{SERVICE}}})", "{{service}}"
                ),
            )
        )
        .with_panel(
            _series(
                "Oldest unsent event",
                "Alert WhistleOutboxBacklog fires above 60 s for 2 minutes.",
                "s",
                _query(
                    f"max by (service) (whistle_outbox_oldest_unsent_age_seconds{{{SERVICE}}})",
                    "{{service}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Outbox published by topic",
                "Events the outbox relays published per second.",
                "ops",
                _query(
                    _over("whistle_outbox_published_total", by="service, topic"),
                    "{{service}} {{topic}}",
                ),
            )
        )
        .with_panel(
            _series(
                "Events sent again after a broker loss",
                "Retained events re-published because the broker no longer held them, by reason "
                "(docs/reliability.md); 0 unless the broker lost data.",
                "short",
                _query(
                    _over("whistle_outbox_republished_total", by="service, reason", fn="increase"),
                    "{{service}} {{reason}}",
                ),
            )
        )
        .with_row(dashboard.Row("Escalation scheduler"))
        .with_panel(
            _series(
                "Ladder steps fired late",
                "How long after their due time ladder steps fired (p50, p95); alert "
                "WhistleSchedulerLate above 5 s.",
                "s",
                _query(
                    "histogram_quantile(0.5, sum by (le) "
                    "(rate(whistle_escalation_step_lag_seconds_bucket[$__rate_interval])))",
                    "p50",
                ),
                _query(
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(whistle_escalation_step_lag_seconds_bucket[$__rate_interval])))",
                    "p95",
                    ref="B",
                ),
            )
        )
    )


def supervision() -> dashboard.Dashboard:
    """For the county's supervisors (县监督): what is open and late, where, and how the
    township and the departments answer. Labels in Chinese, as they read it."""
    month = 'period="month"'
    return (
        _base(
            "whistle-supervision",
            "接诉即办 · 县级监督",
            "在办、超期、催办督办、吹哨报到和三率，按乡镇和部门。数据来自调度、督办服务和存证账本"
            "（三率每分钟重算，口径见 README「KPIs」）。",
        )
        .with_panel(
            _stat(
                "在办案件",
                "尚未办结的案件（含待分拨、待准入）。",
                "sum(whistle_dispatch_open_cases)",
            )
        )
        .with_panel(
            _stat(
                "超期时限",
                "已过期限仍在计时的时限（首次响应、办结、报到、回复）。",
                "sum(whistle_escalation_overdue_clocks_by_township)",
            )
        )
        .with_panel(
            _stat(
                "本月受理",
                "本月立案的案件数。",
                f'sum(whistle_kpi_count{{{month}, group_by="county", count="opened"}})',
            )
        )
        .with_panel(
            _stat(
                "本月督办",
                "本月升级到县领导督办的次数。",
                f'sum(whistle_kpi_count{{{month}, group_by="county", count="supervisions"}})',
            )
        )
        .with_row(dashboard.Row("案件"))
        .with_panel(
            _series(
                "在办案件（按状态）",
                "triage 待分拨 · arbitration 待准入 · assigned 已派单 · accepted 已签收 · "
                "in_progress 办理中 · resolved 已办结待关闭。",
                "short",
                _query("sum by (state) (whistle_dispatch_open_cases)", "{{state}}"),
            )
        )
        .with_panel(
            _series(
                "在办案件（按乡镇）",
                "none：未定位到乡镇的案件。",
                "short",
                _query("sum by (township) (whistle_dispatch_open_cases)", "{{township}}"),
            )
        )
        .with_row(dashboard.Row("时限与升级"))
        .with_panel(
            _series(
                "超期时限（按乡镇）",
                "按案件所属乡镇；部门报到、回复时限计入吹哨的乡镇。",
                "short",
                _query(
                    "sum by (township, kind) (whistle_escalation_overdue_clocks_by_township)",
                    "{{township}} {{kind}}",
                ),
            )
        )
        .with_panel(
            _series(
                "超期时限（按部门）",
                "被吹哨部门的报到、回复时限，以及承办单位所属部门的案件时限。",
                "short",
                _query(
                    "sum by (department, kind) (whistle_escalation_overdue_clocks_by_department)",
                    "{{department}} {{kind}}",
                ),
            )
        )
        .with_panel(
            _series(
                "升级阶梯",
                "每小时触发：warning 预警 · overdue 超期 · chase 催办 · supervise 督办。",
                "short",
                _query(
                    "sum by (step) (increase(whistle_escalation_steps_fired_total[1h]))",
                    "{{step}}",
                ),
            )
        )
        .with_panel(
            _series(
                "吹哨报到用时",
                "从吹哨到部门报到的用时，中位数与 90% 分位，按紧急程度。",
                "s",
                _query(
                    "histogram_quantile(0.5, sum by (urgency, le) "
                    "(rate(whistle_escalation_whistle_receipt_latency_seconds_bucket[1h])))",
                    "中位数 {{urgency}}",
                ),
                _query(
                    "histogram_quantile(0.9, sum by (urgency, le) "
                    "(rate(whistle_escalation_whistle_receipt_latency_seconds_bucket[1h])))",
                    "90% {{urgency}}",
                    ref="B",
                ),
            )
        )
        .with_panel(
            _series(
                "吹哨报到、回复按时率（本月）",
                "被吹哨部门按时报到、按时回复的比例，按部门；分母为 0 的率不显示。",
                "percentunit",
                _query(
                    f'whistle_kpi_rate{{{month}, group_by="department", '
                    'rate=~"whistle_report_on_time_rate|whistle_reply_on_time_rate"}',
                    "{{code}} {{rate}}",
                ),
            )
        )
        .with_row(dashboard.Row("三率"))
        .with_panel(
            _series(
                "全县三率（本月）",
                "响应率、解决率、满意率；分母为 0 的率不显示（无数据），不当作 0。",
                "percentunit",
                _query(
                    f'whistle_kpi_rate{{{month}, group_by="county", '
                    'rate=~"response_rate|resolution_rate|satisfaction_rate"}',
                    "{{rate}}",
                ),
            )
        )
        .with_panel(
            _series(
                "各乡镇三率（本月）",
                "按乡镇；分母为 0 的率不显示。",
                "percentunit",
                _query(
                    f'whistle_kpi_rate{{{month}, group_by="township", '
                    'rate=~"response_rate|resolution_rate|satisfaction_rate"}',
                    "{{code}} {{rate}}",
                ),
            )
        )
    )


def ledger() -> dashboard.Dashboard:
    """For auditors (审计): how large the tamper-evident log is, how fresh its signed head, how
    fast it grows. Whether a copy verifies is answered by ``whistle ledger verify``, not by a
    metric."""
    return (
        _base(
            "whistle-ledger",
            "存证账本",
            "存证账本（Merkle 树）的规模、签名树头的新鲜度和写入速度。导出件是否可验证由 "
            "whistle ledger verify 离线判断。",
        )
        .with_panel(
            _stat("账本条目", "日志（Merkle 树）中的条目数。", "max(whistle_ledger_tree_size)")
        )
        .with_panel(
            _stat(
                "已签名条目",
                "最新签名树头覆盖的条目数。",
                "max(whistle_ledger_signed_tree_size)",
            )
        )
        .with_panel(
            _stat(
                "未签名条目",
                "尚无签名树头覆盖的条目；正常时几秒内归零。",
                "max(whistle_ledger_tree_size) - max(whistle_ledger_signed_tree_size)",
            )
        )
        .with_panel(
            _stat(
                "树头年龄",
                "最新签名树头距今；账本空闲时会增长（无新条目不签新树头）。",
                "max(whistle_ledger_signed_head_age_seconds)",
                unit="s",
            )
        )
        .with_panel(
            _series(
                "写入速度",
                "每秒新增条目。",
                "ops",
                _query("sum(deriv(whistle_ledger_tree_size[5m]))", "条目/秒"),
            )
        )
        .with_panel(
            _series(
                "账本消费",
                "账本服务从各主题取得的事件，按结果（duplicate 为重复投递，已丢弃）。",
                "ops",
                _query(
                    'sum by (outcome) (rate(whistle_events_consumed_total{service="ledger"}[5m]))',
                    "{{outcome}}",
                ),
            )
        )
    )


DASHBOARDS: dict[str, Callable[[], dashboard.Dashboard]] = {
    "operations": operations,
    "supervision": supervision,
    "ledger": ledger,
}


def render(build: Callable[[], dashboard.Dashboard]) -> str:
    return JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False).encode(build().build()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = TARGET / f"{name}.json"
        text = render(build)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.relative_to(REPO))
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(map(str, stale))}; run make contracts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
