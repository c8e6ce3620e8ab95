"""docs/metrics.md lists exactly what the services export: every ``whistle_*`` metric family the
four services register (on the default registry, served at /metrics, and on the ledger's KPI
registry, served at /v1/kpis/metrics), with its type and label names, both ways."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from services.runtime.settings import SERVICES
from tests.conftest import REPO

INVENTORY = REPO / "docs" / "metrics.md"
READERS = {"operations", "county supervision", "auditors"}
# The series a family is queried by: a counter's carry _total (prometheus_client names the
# family without it).
EXPOSED_SUFFIX = {"counter": "_total"}
ROW = re.compile(r"^\|\s*`(whistle_[a-z0-9_]+)`\s*\|(.*)\|\s*$")


@dataclass(frozen=True)
class Metric:
    name: str  # as queried: a counter with its _total
    type: str
    labels: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    metric: Metric
    section: str
    readers: frozenset[str]


def documented() -> list[Row]:
    rows, section = [], ""
    for line in INVENTORY.read_text().splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            continue
        match = ROW.match(line)
        if not match:
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        assert len(cells) == 4, f"docs/metrics.md: a row needs 5 cells: {line}"
        kind, labels, meaning, readers = cells
        assert meaning, f"docs/metrics.md: {match.group(1)} says nothing of what it means"
        rows.append(
            Row(
                Metric(
                    match.group(1),
                    kind,
                    tuple(re.findall(r"`([a-z_]+)`", labels)) if labels != "—" else (),
                ),
                section,
                frozenset(r.strip() for r in readers.split(",")),
            )
        )
    return rows


def loaded_metric_objects() -> dict[str, MetricWrapperBase]:
    """Every metric object defined at module level in the services' loaded modules, by the
    family name prometheus_client gives it."""
    found = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("services.") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    found[family.name] = value
    return found


def families(registry: CollectorRegistry) -> Iterable[tuple[str, str]]:
    for family in registry.collect():
        if family.name.startswith("whistle_"):
            yield family.name, family.type


def exported(registry: CollectorRegistry) -> set[Metric]:
    for service in SERVICES:
        importlib.import_module(f"services.{service}.app")
    objects = loaded_metric_objects()
    metrics = set()
    for name, kind in families(registry):
        assert name in objects, f"{name} is registered but not defined at module level"
        # The label names of a metric are not part of prometheus_client's public API; they are
        # what a labelled metric keeps to make its children.
        labels = tuple(objects[name]._labelnames)
        metrics.add(Metric(name + EXPOSED_SUFFIX.get(kind, ""), kind, labels))
    return metrics


def kpi_registry() -> CollectorRegistry:
    from services.ledger.kpi_store import KPI_REGISTRY

    return KPI_REGISTRY


def test_the_inventory_lists_every_exported_metric_and_nothing_else() -> None:
    rows = documented()
    listed = [row.metric for row in rows]
    assert len(listed) == len(set(m.name for m in listed)), "a metric is listed twice"
    actual = exported(REGISTRY) | exported(kpi_registry())
    assert actual, "no whistle_* metric found: the test has lost sight of them"
    missing = sorted(actual - set(listed), key=lambda m: m.name)
    stale = sorted(set(listed) - actual, key=lambda m: m.name)
    assert missing == [], "exported but not (or not so) in docs/metrics.md"
    assert stale == [], "in docs/metrics.md but not (or not so) exported"


def test_the_kpi_section_holds_what_only_kpi_readers_may_scrape() -> None:
    in_section = {row.metric for row in documented() if "/v1/kpis/metrics" in row.section}
    assert in_section == exported(kpi_registry())


@pytest.mark.parametrize("row", documented(), ids=lambda row: row.metric.name)
def test_each_row_says_who_reads_it(row: Row) -> None:
    assert row.readers and row.readers <= READERS, row.readers
