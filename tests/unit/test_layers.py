"""The house's layers point one way, read from the source itself.

    launcher → the four services → reference, runtime → contracts

No service imports another; runtime (plumbing) imports no service and no launcher; reference
(the county's data) imports neither services nor runtime; contracts import nothing of ours.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

SERVICES = ("intake", "dispatch", "escalation", "ledger")


def _layer(module: str) -> str | None:
    """The layer a module of ours belongs to; None for a module that is not ours."""
    parts = module.split(".")
    if parts[0] in ("contracts", "reference"):
        return parts[0]
    if parts[0] == "services" and len(parts) > 1:
        if parts[1] in SERVICES:
            return f"service:{parts[1]}"
        if parts[1] in ("runtime", "launcher"):
            return parts[1]
    return None


# What each layer may import besides itself.
MAY_IMPORT: dict[str, set[str]] = {
    "contracts": set(),
    "reference": {"contracts"},
    "runtime": {"contracts"},
    "launcher": {"runtime", "reference", "contracts", *(f"service:{s}" for s in SERVICES)},
    **{f"service:{s}": {"runtime", "reference", "contracts"} for s in SERVICES},
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for top in ("contracts", "reference", "services"):
        for path in sorted((REPO / top).rglob("*.py")):
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            found.append((module.removesuffix(".__init__"), path))
    return found


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """Every module named by an import in ``path``, lazy ones inside functions included."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.append((node.lineno, base))
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def _violations() -> list[str]:
    found = []
    for module, path in _modules():
        own = _layer(module)
        if own is None:  # the ``services`` package itself, which holds no code
            continue
        for line, name in _imports(module, path):
            target = _layer(name)
            if target is None or target == own or target in MAY_IMPORT[own]:
                continue
            found.append(f"{path.relative_to(REPO)}:{line}: {own} imports {name} ({target})")
    return found


def test_every_import_points_down_and_no_service_imports_another() -> None:
    assert _violations() == []


@pytest.mark.parametrize(
    ("module", "imported", "allowed"),
    [
        ("services.runtime.outbox", "services.dispatch.cases", False),
        ("services.intake.channels", "services.dispatch.cases", False),
        ("reference.county", "services.runtime.settings", False),
        ("contracts.events", "reference.county", False),
        ("services.launcher.stack", "services.escalation.calendar", True),
        ("services.ledger.app", "reference.county", True),
    ],
)
def test_the_rule_itself(module: str, imported: str, allowed: bool) -> None:
    """The check would catch an arrow pointing the wrong way (it is not vacuous)."""
    own, target = _layer(module), _layer(imported)
    assert own is not None and target is not None
    assert (target == own or target in MAY_IMPORT[own]) is allowed
