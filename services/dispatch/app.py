"""Dispatch: decides who must act on every tip and runs the case lifecycle."""

from __future__ import annotations

from fastapi import FastAPI

from reference.county import county_tenancy
from services.dispatch import (
    api,
    assessment_api,
    console,
    console_api,
    consumers,
    coordination_api,
    decision_api,
    evidence_api,
    inspection_api,
    metrics,
    publicity_api,
    referral_api,
    retention,
)
from services.dispatch.inspection_service import InspectionScheduler
from services.dispatch.wiring import current_counties, load_reference_data, reload_on_sighup
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    load_reference_data(runtime)
    for sweep in retention.sweeps(runtime):
        runtime.retention.add(sweep)
    runtime.run_in_background("reference-reload", reload_on_sighup(runtime))
    runtime.run_in_background(
        "open-cases",
        metrics.refresh_periodically(runtime, metrics.OPEN_CASES_REFRESH_SECONDS),
    )
    planner = InspectionScheduler(
        runtime.sessions,
        lambda: current_counties(runtime).values(),  # every county plans its own townships
        runtime.clock,
        runtime.settings.timezone,
        interval_seconds=runtime.settings.inspection_planning_interval_seconds,
        after_commit=runtime.relay.wake,
    )
    runtime.run_in_background("inspection-planning", planner.run())
    return consumers.subscription(runtime)


DISPATCH = ServiceDefinition(
    name="dispatch",
    routers=[
        api.router,
        coordination_api.router,
        referral_api.router,
        evidence_api.router,
        console_api.router,
        console.router,
        publicity_api.router,
        assessment_api.router,
        inspection_api.router,
        decision_api.router,
        publicity_api.page,
    ],
    setup=setup,
    counties=county_tenancy,
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    settings = settings or Settings()
    app = create_service_app(DISPATCH, settings, clock)
    # The department page (escalation's origin) refers matters here from the browser.
    app.add_middleware(referral_api.DepartmentPageCors, origins=settings.department_origins)
    return app
