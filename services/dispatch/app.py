"""Dispatch: decides who must act on every tip and runs the case lifecycle."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI

from contracts.events import TipRated, TipReceived, TipSupplemented
from contracts.topics import TIPS
from reference.county import ReferenceData, load_reference
from services.dispatch import api, console, console_api, coordination_api
from services.dispatch.console_feed import FEED_HANDLERS, FEED_TOPICS, keeping_tip_text
from services.dispatch.handlers import RatingReopen, TipIntake, TipSupplement
from services.dispatch.merging import MergePolicy
from services.runtime.clock import Clock, system_clock
from services.runtime.inbox import Subscription
from services.runtime.service import Runtime, ServiceDefinition, create_service_app
from services.runtime.settings import Settings


async def setup(runtime: Runtime) -> Subscription:
    loaded = load_reference(runtime.settings.config_dir)
    loaded.prepare()  # jieba's dictionary and the grid index, before the first tip arrives
    runtime.state["reference"] = loaded
    runtime.run_in_background("reference-reload", coordination_api.reload_on_sighup(runtime))

    def reference() -> ReferenceData:
        current: ReferenceData = runtime.state["reference"]
        return current

    on_tip = TipIntake(
        reference,
        runtime.clock,
        confidence_threshold=runtime.settings.triage_confidence_threshold,
        timezone=runtime.settings.timezone,
        merge=MergePolicy(
            distance_m=runtime.settings.merge_distance_m,
            window=timedelta(hours=runtime.settings.merge_window_hours),
        ),
    )
    return Subscription(
        topics=(TIPS, *FEED_TOPICS),
        handlers={
            TipReceived.event_type: keeping_tip_text(on_tip),
            TipRated.event_type: RatingReopen(runtime.clock),
            TipSupplemented.event_type: TipSupplement(
                reference,
                runtime.clock,
                confidence_threshold=runtime.settings.triage_confidence_threshold,
                timezone=runtime.settings.timezone,
            ),
            **FEED_HANDLERS,
        },
    )


DISPATCH = ServiceDefinition(
    name="dispatch",
    routers=[api.router, coordination_api.router, console_api.router, console.router],
    setup=setup,
)


def create_app(settings: Settings | None = None, clock: Clock = system_clock) -> FastAPI:
    return create_service_app(DISPATCH, settings, clock)
