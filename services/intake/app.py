"""Intake: accepts tips from every channel and tells citizens where their tip stands."""

from __future__ import annotations

from fastapi import FastAPI

from reference.county import county_tenancy, load_counties
from services.intake import (
    attachments_api,
    citizen,
    consumers,
    erasure_api,
    feedback_api,
    grid,
    hotline,
    open311,
    retention,
    web,
    wechat,
)
from services.intake.contact import ContactVault
from services.intake.wechat_crypto import aes_key
from services.runtime.clock import Clock, system_clock
from services.runtime.db import bound_waits
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    settings = runtime.settings
    # Before anything connects: every connection of intake's pool gets the bounds.
    bound_waits(
        runtime.engine,
        connect_seconds=settings.intake_database_connect_timeout_seconds,
        statement_seconds=settings.intake_database_statement_timeout_seconds,
    )
    runtime.state["vault"] = ContactVault.from_file(
        runtime.settings.contact_key_path, runtime.settings.access_code_key.encode()
    )
    # A malformed EncodingAESKey stops the start, not the first safe-mode message.
    runtime.state["wechat_aes_key"] = aes_key(runtime.settings.wechat_encoding_aes_key)
    # Every county's reference data: a tip belongs to its place's county (channels.py).
    runtime.state["counties"] = load_counties(settings.config_dir)
    open311.load_services(runtime)
    for sweep in retention.sweeps(runtime):
        runtime.retention.add(sweep)
    return consumers.subscription(runtime)


INTAKE = ServiceDefinition(
    name="intake",
    routers=[
        web.router,
        feedback_api.router,
        attachments_api.router,
        citizen.router,
        hotline.router,
        grid.router,
        wechat.router,
        open311.router,
        erasure_api.router,
    ],
    setup=setup,
    counties=county_tenancy,
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(INTAKE, settings, clock)
