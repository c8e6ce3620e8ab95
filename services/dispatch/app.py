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
    metrics,
    publicity_api,
    referral_api,
    retention,
)
from services.dispatch.wiring import load_reference_data, reload_on_sighup
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
    return consumers.subscription(runtime)


DISPATCH = ServiceDefinition(
    name="dispatch",
    routers=[
        api.router,
        coordination_api.router,
        referral_api.router,
        console_api.router,
        console.router,
        publicity_api.router,
        assessment_api.router,
        publicity_api.page,
    ],
    setup=setup,
    counties=county_tenancy,
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(DISPATCH, settings, clock)
