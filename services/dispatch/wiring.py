"""How a dispatch process hands its parts to the case service: the reference data in force
and the triage model trained from the county's labelled tips over it (loaded at start; a
reload, by HTTP or ``kill -HUP``, swaps both whole), the county's date, and a case service
over a session with the process's clock and settings."""

from __future__ import annotations

import asyncio
import logging
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from reference.county import CountySet, ReferenceData, ReferenceDataError, load_counties
from services.dispatch.cases import CaseService, DispatchSettings
from services.dispatch.classifier import TriageModel
from services.dispatch.corpus import CorpusError, load_model
from services.runtime.service import Runtime
from services.runtime.signals import on_sighup

log = logging.getLogger(__name__)


def load_reference_data(runtime: Runtime) -> None:
    """Put deploy/config's reference data in force, prepared: jieba's dictionary, the grid
    index and the triage model are built before the first tip arrives."""
    _put_in_force(runtime, *_load_prepared(runtime))


def _put_in_force(runtime: Runtime, counties: CountySet, model: TriageModel | None) -> None:
    # No await between them: a reader sees the old version or the new one whole.
    runtime.state["counties"], runtime.state["triage_model"] = counties, model
    runtime.state["reference"] = counties.default
    # The model is trained over the default county's catalogue: a county with a catalogue of
    # its own is classified by its keywords alone.
    runtime.state["model_counties"] = frozenset(
        code for code, data in counties.items() if data.catalogue == counties.default.catalogue
    )


def current_reference(runtime: Runtime) -> ReferenceData:
    """The default county's reference data in force (a reload swaps it whole)."""
    reference: ReferenceData = runtime.state["reference"]
    return reference


def current_counties(runtime: Runtime) -> CountySet:
    """Every county's reference data in force, by division code."""
    counties: CountySet = runtime.state["counties"]
    return counties


def current_model(runtime: Runtime) -> TriageModel | None:
    """The triage model trained over the reference data in force (None: keywords only)."""
    model: TriageModel | None = runtime.state.get("triage_model")
    return model


def county_model(runtime: Runtime, reference: ReferenceData) -> TriageModel | None:
    """The triage model that classifies ``reference``'s county's tips: the one trained over
    the default county's catalogue, for a county sharing it (None: its keywords alone)."""
    modelled = reference.county.code in runtime.state["model_counties"]
    return current_model(runtime) if modelled else None


def local_today(runtime: Runtime) -> date:
    """The county's date now: certificates are valid by it."""
    return runtime.clock().astimezone(ZoneInfo(runtime.settings.timezone)).date()


def case_service(runtime: Runtime, session: AsyncSession, county: str | None = None) -> CaseService:
    """The case service for one transaction of ``session``, with the reference data in force,
    working in ``county`` (an arriving event's; None: the default, until a command's case
    names its own)."""
    counties = current_counties(runtime)
    reference = counties.of(county)
    return CaseService(
        session,
        reference=reference,
        model=county_model(runtime, reference),
        clock=runtime.clock,
        settings=DispatchSettings.of(runtime.settings),
        counties=counties,
    )


def _load_prepared(runtime: Runtime) -> tuple[CountySet, TriageModel | None]:
    config_dir = runtime.settings.config_dir
    counties = load_counties(config_dir)
    for reference in counties.values():
        reference.prepare()
    loaded = counties.default
    try:
        # Trained from text (~0.5 s for the sample's tips): nothing unpickled, nothing downloaded.
        # One model over the province's catalogue, which the sample counties share.
        model = load_model(config_dir, loaded)
    except CorpusError as exc:
        # Refused like any other invalid reference data: the version in force stays.
        raise ReferenceDataError(exc.reasons) from exc
    if model is not None:
        log.info("triage model %s trained on %d tips", model.version, model.examples)
    return counties, model


async def reload_reference(runtime: Runtime) -> ReferenceData:
    """Load and validate deploy/config into a new version and put it in force in one step;
    on ReferenceDataError the version in force stays. One reload at a time."""
    lock: asyncio.Lock = runtime.state.setdefault("reference_reload", asyncio.Lock())
    async with lock:
        # Parsing and building jieba's dictionary take a while: off the event loop, so that
        # tips keep being routed with the old version until the new one is whole.
        counties, model = await asyncio.to_thread(_load_prepared, runtime)
        _put_in_force(runtime, counties, model)
    log.info("reference data %s in force", counties.default.version)
    return counties.default


async def reload_on_sighup(runtime: Runtime) -> None:
    """``kill -HUP`` reloads the reference data, like POST /v1/reference/reload."""

    async def reload() -> None:
        try:
            await reload_reference(runtime)
        except ReferenceDataError as exc:
            log.error(
                "reference data not reloaded, %s stays in force: %s",
                current_reference(runtime).version,
                "; ".join(exc.reasons),
            )

    await on_sighup(reload)
