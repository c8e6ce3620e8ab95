"""Escalation: deadlines, the escalation ladder and the whistle protocol (吹哨报到)."""

from __future__ import annotations

from fastapi import FastAPI

from reference.county import county_tenancy, load_counties, load_reference
from services.escalation import (
    api,
    calendar_api,
    consumers,
    extension_api,
    meeting_api,
    metrics,
    whistle_api,
)
from services.escalation.calendar import BusinessCalendar
from services.escalation.calendar_watch import CalendarWatch
from services.escalation.policies import PolicyBook, load_policies, policies_file
from services.escalation.scheduler import EscalationScheduler
from services.escalation.whistle_protocol import RECEIPT_LATENCY, URGENCIES
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    settings = runtime.settings
    runtime.state["policies"] = load_policies(
        policies_file(settings.config_dir, settings.policy_profile)
    )
    # An invalid calendar (or one in another time zone) stops the service here, before it
    # consumes anything: a deadline counted on the wrong days is worse than none. A missing
    # current year does not: it is counted Monday to Friday, provisionally, and said loudly.
    watch = CalendarWatch(
        settings.config_dir / "calendar.yaml",
        settings.timezone,
        runtime.sessions,
        runtime.clock,
        counties=runtime.counties,
        after_commit=runtime.relay.wake,
    )
    runtime.state["calendar_watch"] = watch
    watch.announce(always=True)
    runtime.readiness_details["calendar"] = lambda: watch.status().readiness()
    # Deadlines counted Monday to Friday on a year this calendar now covers are counted again.
    await watch.recount()
    runtime.run_in_background("calendar-poll", watch.poll(settings.calendar_poll_seconds))
    runtime.run_in_background("calendar-sighup", watch.reload_on_sighup())

    def policies() -> PolicyBook:
        current: PolicyBook = runtime.state["policies"]
        return current

    def calendar() -> BusinessCalendar:
        return watch.current()  # a reload swaps it whole

    scheduler = EscalationScheduler(
        runtime.sessions,
        calendar,
        runtime.clock,
        counties=runtime.counties,
        interval_seconds=settings.escalation_scheduler_interval_seconds,
        batch_size=settings.escalation_scheduler_batch_size,
        after_commit=runtime.relay.wake,
    )
    runtime.run_in_background("scheduler", scheduler.run())
    # The default county's departments and townships: the overdue gauges' labels.
    reference = load_reference(settings.config_dir)
    runtime.state["reference"] = reference
    # Every county's: a meeting summons its township's county's departments and units.
    runtime.state["counties"] = load_counties(settings.config_dir)
    scope = metrics.OverdueScope.of(reference)
    runtime.run_in_background(
        "overdue-gauges",
        metrics.refresh_periodically(
            runtime.sessions, scope, runtime.clock, metrics.OVERDUE_REFRESH_SECONDS
        ),
    )
    for urgency in URGENCIES:  # every urgency shows, with no observation yet
        RECEIPT_LATENCY.labels(urgency)
    # What it consumes, and the handler of each event type: services/escalation/consumers.py.
    return consumers.subscription(runtime, policies=policies, calendar=calendar)


ESCALATION = ServiceDefinition(
    name="escalation",
    routers=[
        api.router,
        calendar_api.router,
        extension_api.router,
        whistle_api.router,
        whistle_api.page_router,
        meeting_api.router,
        meeting_api.page_router,
    ],
    setup=setup,
    counties=county_tenancy,
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(ESCALATION, settings, clock)
