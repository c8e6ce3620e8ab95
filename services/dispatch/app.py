"""Dispatch: decides who must act on every tip and runs the case lifecycle."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.events import TipReceived
from contracts.topics import TIPS
from services.dispatch import api
from services.dispatch.handlers import TipIntake
from services.dispatch.reference import ReferenceData, load_reference
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    loaded = load_reference(runtime.settings.config_dir)
    loaded.prepare()  # jieba's dictionary and the grid index, before the first tip arrives
    runtime.state["reference"] = loaded

    def reference() -> ReferenceData:
        current: ReferenceData = runtime.state["reference"]
        return current

    on_tip = TipIntake(
        reference,
        runtime.clock,
        confidence_threshold=runtime.settings.triage_confidence_threshold,
        timezone=runtime.settings.timezone,
    )
    return Subscription(topics=(TIPS,), handlers={TipReceived.event_type: on_tip})


DISPATCH = ServiceDefinition(name="dispatch", routers=[api.router], setup=setup)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(DISPATCH, settings, clock)
