"""Intake: accepts tips from every channel and tells citizens where their tip stands."""

from __future__ import annotations

from fastapi import FastAPI

from contracts.topics import CASES
from services.intake import api, grid, handlers, hotline
from services.intake.contact import ContactVault
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    runtime.state["vault"] = ContactVault.from_file(runtime.settings.contact_key_path)
    return Subscription(topics=(CASES,), handlers=handlers.HANDLERS)


INTAKE = ServiceDefinition(
    name="intake", routers=[api.router, hotline.router, grid.router], setup=setup
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(INTAKE, settings, clock)
