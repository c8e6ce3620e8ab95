"""Escalation: deadlines, the escalation ladder and the whistle protocol (吹哨报到)."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.events import CaseAssigned
from contracts.topics import CASES
from services.escalation import api
from services.escalation.handlers import AssignmentClocks
from services.escalation.policies import PolicyBook, load_policies
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    runtime.state["policies"] = load_policies(runtime.settings.config_dir / "policies.yaml")

    def policies() -> PolicyBook:
        current: PolicyBook = runtime.state["policies"]
        return current

    on_assigned = AssignmentClocks(policies, runtime.clock, runtime.settings.timezone)
    return Subscription(topics=(CASES,), handlers={CaseAssigned.event_type: on_assigned})


ESCALATION = ServiceDefinition(name="escalation", routers=[api.router], setup=setup)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(ESCALATION, settings, clock)
