"""Dispatch's layers, read from its source: thin edges over one case service over pure rules.

The edges (routers and the consumers module) never import each other, and no module imports
another's private name; only the service layer stages events; the routers change nothing but
through the case service; the pure rules import no web, database or runtime plumbing.
"""

from __future__ import annotations

import ast

import pytest

from tests.support import source

PACKAGE = "services.dispatch"

ROUTERS = {
    "api",
    "console_api",
    "coordination_api",
    "console",
    "publicity_api",
    "assessment_api",
    "inspection_api",
    "decision_api",
}
EDGES = ROUTERS | {"consumers"}
# Modules that change cases and say so in events.
SERVICE = {"cases", "assessment_service", "inspection_service", "meeting_decisions"}
# The rules: plain data and functions.
PURE = {
    "lifecycle",
    "merging",
    "routing",
    "triage",
    "classifier",
    "evaluation",
    "whistles",
    "labels",
    "deadline_colour",
    "publicity",
    "authority",
    "enforcement",
    "assessments",
    "inspections",
}
# What a pure rule may not reach for (whistles builds a row of models.Whistle for the service
# to add, which is data, not a database call).
PLUMBING = ("fastapi", "sqlalchemy", "sqlmodel", "services.runtime", "starlette")


def modules() -> dict[str, ast.Module]:
    return source.modules(PACKAGE)


def imports(tree: ast.Module) -> list[tuple[str, str | None]]:
    return source.imports(tree, PACKAGE)


def dispatch_module(module: str) -> str | None:
    return source.own_module(module, PACKAGE)


def test_the_layers_name_real_modules() -> None:
    """A renamed module must be renamed here too, or these tests would check nothing."""
    assert set(modules()) >= EDGES | SERVICE | PURE


@pytest.mark.parametrize("edge", sorted(EDGES))
def test_an_edge_never_imports_another_edge(edge: str) -> None:
    imported = {dispatch_module(module) for module, _ in imports(modules()[edge])}
    assert not (imported & EDGES) - {edge}


def test_no_module_imports_a_private_name_of_another() -> None:
    private = [
        f"{name}: {module}.{what}"
        for name, tree in modules().items()
        for module, what in imports(tree)
        if what and source.private(what)
    ]
    assert private == []


def test_only_the_service_layer_stages_events() -> None:
    staging = source.stagers(PACKAGE)
    assert staging <= SERVICE
    assert staging, "the case service stages its events: this test has lost sight of it"


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_a_router_changes_nothing_but_through_the_case_service(router: str) -> None:
    assert source.session_writes(modules()[router]) == set()


@pytest.mark.parametrize("rule", sorted(PURE))
def test_a_rule_is_plain_data_and_functions(rule: str) -> None:
    reached = {
        module
        for module, _ in imports(modules()[rule])
        if module.startswith(PLUMBING) or (dispatch_module(module) not in (None, *PURE, "models"))
    }
    assert reached == set()
