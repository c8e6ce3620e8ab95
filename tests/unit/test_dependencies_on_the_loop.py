"""Every route's dependencies are coroutines: FastAPI runs a plain function dependency in a
worker thread, a thread hop per request that cost intake 3 % of its CPU under load
(docs/benchmarks.md). Checked over every router the services define."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import services


def _routers() -> Iterator[tuple[str, APIRouter]]:
    for module in pkgutil.walk_packages(services.__path__, "services."):
        if module.ispkg or ".migrations" in module.name:
            continue
        for name, value in vars(importlib.import_module(module.name)).items():
            if isinstance(value, APIRouter):
                yield f"{module.name}.{name}", value


def _threaded(dependant: Dependant) -> Iterator[str]:
    for sub in dependant.dependencies:
        call = sub.call
        if call is not None and not (
            inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)
        ):
            yield getattr(call, "__qualname__", repr(call))
        yield from _threaded(sub)


def test_no_route_has_a_dependency_that_runs_in_a_worker_thread() -> None:
    routes = 0
    threaded = set()
    for where, router in _routers():
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes += 1
                threaded |= {f"{where} {route.path}: {name}" for name in _threaded(route.dependant)}
    assert routes > 50  # the services' routers were found
    assert not threaded, sorted(threaded)
