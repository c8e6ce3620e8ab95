"""Ledger: the county's append-only, tamper-evident record of every case event."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.tenancy import Counties
from reference.county import (
    MatterKind,
    ReferenceData,
    county_tenancy,
    load_counties,
    load_reference,
)
from services.ledger import api, assessment_api, auditor, consumers, kpi_api
from services.ledger.heads import HeadSigner
from services.ledger.issuer import issue, issue_periodically, report_head, signing_key
from services.ledger.kpi_store import CountyScope, MetricScope, refresh_periodically
from services.ledger.recorder import TREE_SIZE
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings

# How often the KPI gauges on /metrics are recomputed.


def kpi_scope(
    reference: ReferenceData, timezone: str, counties: Counties | None = None
) -> MetricScope:
    """Which codes may appear as metric labels, and which department each unit belongs to
    (a township team belongs to none); the county of facts naming none is the default's."""
    counties = counties or Counties.single(reference.county.code)
    return MetricScope(
        timezone=timezone,
        unit_departments={unit.id: unit.department for unit in reference.units.values()},
        known={
            "county": counties.known,
            "township": frozenset(reference.townships),
            "unit": frozenset(reference.units),
            "department": frozenset(reference.departments),
            "matter": frozenset(reference.items),
            "kind": frozenset(kind.value for kind in MatterKind),
        },
        matter_kinds={item.code: item.kind.value for item in reference.catalogue.items},
        county=CountyScope(counties.default),
    )


async def setup(runtime: Runtime) -> Subscription:
    signer = runtime.state["signer"] = HeadSigner(signing_key(runtime.settings))
    # A head exists before the ledger is ready, so GET /v1/tree-head always has an answer.
    head, _ = await issue(runtime.sessions, signer, runtime.clock)
    TREE_SIZE.set(head.tree_size)  # the log as committed at start: this head covers all of it
    report_head(head, runtime.clock)
    runtime.run_in_background(
        "tree-heads",
        issue_periodically(
            runtime.sessions,
            signer,
            runtime.clock,
            runtime.settings.ledger_tree_head_interval_seconds,
            head,
        ),
    )
    reference = runtime.state["reference"] = load_reference(runtime.settings.config_dir)
    scope = runtime.state["kpi_scope"] = kpi_scope(
        reference, runtime.settings.timezone, runtime.counties
    )
    runtime.run_in_background(
        "kpi-gauges",
        refresh_periodically(
            runtime.sessions, scope, runtime.clock, runtime.settings.ledger_kpi_refresh_seconds
        ),
    )
    # What it consumes, and what it does with each event: services/ledger/consumers.py.
    # Every county's department topics: the county's copies are recorded as the originals are.
    departments = load_counties(runtime.settings.config_dir).departments()
    return consumers.subscription(runtime, [d.topic for d in departments])


LEDGER = ServiceDefinition(
    name="ledger",
    routers=[api.router, kpi_api.router, assessment_api.router, auditor.router],
    setup=setup,
    counties=county_tenancy,
    # Not the tables' owner, so it cannot disable the append-only triggers (ledger_0005).
    database_role="whistle_ledger_writer",
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(LEDGER, settings, clock)
