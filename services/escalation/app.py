"""Escalation: deadlines, the escalation ladder and the whistle protocol (吹哨报到)."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.events import CaseAccepted, CaseAssigned, CaseReopened, CaseResolved
from contracts.topics import CASES
from services.escalation import api
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.handlers import AssignmentClocks, ClockStops
from services.escalation.policies import PolicyBook, load_policies
from services.escalation.scheduler import EscalationScheduler
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    settings = runtime.settings
    runtime.state["policies"] = load_policies(settings.config_dir / "policies.yaml")
    # An invalid calendar (or one in another time zone) stops the service here, before it
    # consumes anything: a deadline counted on the wrong days is worse than none.
    runtime.state["calendar"] = load_calendar(
        settings.config_dir / "calendar.yaml", settings.timezone
    )

    def policies() -> PolicyBook:
        current: PolicyBook = runtime.state["policies"]
        return current

    def calendar() -> BusinessCalendar:
        current: BusinessCalendar = runtime.state["calendar"]
        return current

    scheduler = EscalationScheduler(
        runtime.sessions,
        calendar,
        runtime.clock,
        interval_seconds=settings.escalation_scheduler_interval_seconds,
        batch_size=settings.escalation_scheduler_batch_size,
        after_commit=runtime.relay.wake,
    )
    runtime.run_in_background("scheduler", scheduler.run())
    on_assigned = AssignmentClocks(policies, calendar, runtime.clock)
    stops = ClockStops(calendar, runtime.clock)
    return Subscription(
        topics=(CASES,),
        handlers={
            CaseAssigned.event_type: on_assigned,
            CaseAccepted.event_type: stops.on_accepted,
            CaseResolved.event_type: stops.on_resolved,
            CaseReopened.event_type: stops.on_reopened,
        },
    )


ESCALATION = ServiceDefinition(name="escalation", routers=[api.router], setup=setup)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(ESCALATION, settings, clock)
