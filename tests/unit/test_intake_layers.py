"""Intake's layers, read from its source: thin edges over one acceptance path and the tip's
service.

The edges (the channels' and the other routers, and the consumers module) are imported by
app.py alone, so no edge imports another; no module reaches for another's private name; only
the service layer (channels.py, tips.py) stages events, and it raises domain errors, never
HTTP problems; a router changes nothing but through the service layer.
"""

from __future__ import annotations

import ast

import pytest

from tests.support import source
from tests.support.source import private

PACKAGE = "services.intake"

CHANNELS = {"web", "hotline", "grid", "open311", "wechat"}
ROUTERS = CHANNELS | {"attachments_api", "feedback_api", "citizen", "erasure_api"}
EDGES = ROUTERS | {"consumers"}
# What wires the edges into a service.
WIRING = {"app"}
# What stores tips and stages their events.
SERVICE = {"channels", "tips", "erasure"}
# What says an HTTP answer: the service layer leaves that to the edges.
HTTP = ("fastapi", "starlette", "services.runtime.problems", "services.intake.edges")


def modules() -> dict[str, ast.Module]:
    return source.modules(PACKAGE)


def imports(tree: ast.Module) -> list[tuple[str, str | None]]:
    return source.imports(tree, PACKAGE)


def intake_module(module: str) -> str | None:
    return source.own_module(module, PACKAGE)


def module_aliases(tree: ast.Module) -> set[str]:
    """The names a module binds to modules it imports (``import x``, ``from pkg import x``)."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == PACKAGE:
            aliases.update(a.asname or a.name for a in node.names)
    return aliases


def defines_router(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "router" for t in node.targets)
        for node in tree.body
    )


def test_the_layers_name_real_modules() -> None:
    """A renamed module must be renamed here too, or these tests would check nothing."""
    assert set(modules()) >= EDGES | WIRING | SERVICE


def test_every_router_is_known_as_an_edge() -> None:
    """A new router is an edge like the others, held to the same rules."""
    assert {name for name, tree in modules().items() if defines_router(tree)} == ROUTERS


@pytest.mark.parametrize("name", sorted(set(modules()) - WIRING))
def test_only_the_wiring_imports_an_edge(name: str) -> None:
    imported = {intake_module(module) for module, _ in imports(modules()[name])}
    assert not (imported & EDGES) - {name}


def test_no_module_imports_a_private_name_of_another() -> None:
    reached = []
    for name, tree in modules().items():
        reached += [
            f"{name}: {module}.{what}" for module, what in imports(tree) if what and private(what)
        ]
        aliases = module_aliases(tree)
        reached += [
            f"{name}: {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and private(node.attr)
        ]
    assert reached == []


def test_only_the_service_layer_stages_events() -> None:
    staging = source.stagers(PACKAGE)
    assert staging <= SERVICE
    assert staging, "the service layer stages its events: this test has lost sight of it"


def test_intake_names_its_event_source_once() -> None:
    defined = [
        name
        for name, tree in modules().items()
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SOURCE" for t in node.targets)
    ]
    assert defined == ["__init__"]


@pytest.mark.parametrize("service", sorted(SERVICE))
def test_the_service_layer_raises_domain_errors_not_http_problems(service: str) -> None:
    reached = {module for module, _ in imports(modules()[service]) if module.startswith(HTTP)}
    assert reached == set()


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_a_router_changes_nothing_but_through_the_service_layer(router: str) -> None:
    assert source.session_writes(modules()[router]) == set()
