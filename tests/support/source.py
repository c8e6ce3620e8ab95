"""Reading a service package's own source, for the tests that hold its layers in place
(tests/unit/test_dispatch_layers.py, tests/unit/test_intake_layers.py)."""

from __future__ import annotations

import ast
from functools import cache

from tests.conftest import REPO

# Session and transaction calls: a router reaches the database only to read.
WRITES = frozenset({"transaction", "add", "add_all", "delete", "flush", "commit", "merge"})


@cache
def modules(package: str) -> dict[str, ast.Module]:
    """Each module of ``package`` (``services.intake``) by its name, parsed."""
    source = REPO.joinpath(*package.split("."))
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in source.glob("*.py")}


def imports(tree: ast.Module, package: str) -> list[tuple[str, str | None]]:
    """Every (module, name) imported; name is None for ``import module``."""
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                # ``from services.intake import tips`` imports the module tips.
                if node.module == package:
                    found.append((f"{package}.{alias.name}", None))
                else:
                    found.append((node.module, alias.name))
    return found


def own_module(module: str, package: str) -> str | None:
    """The name of ``package``'s module that ``module`` is or lies in; None outside it."""
    prefix = f"{package}."
    return module.removeprefix(prefix).split(".")[0] if module.startswith(prefix) else None


def private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def stagers(package: str) -> set[str]:
    """The modules that stage outgoing events: call ``stage`` or import the outbox."""
    staging = set()
    for name, tree in modules(package).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == "stage":
                    staging.add(name)
        if any(module == "services.runtime.outbox" for module, _ in imports(tree, package)):
            staging.add(name)
    return staging


def session_writes(tree: ast.Module) -> set[str]:
    """The database-writing calls (``WRITES``) a module makes."""
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in WRITES
    }
