"""Personal fields are declared in the contracts (issue #20, item 1): every field of every event
type that looks like a citizen's personal data — words, place, contact — carries
``"x-personal": true`` in its published JSON Schema, or is listed here as not personal with the
reason why. The ledger seals exactly the declared fields (services/ledger/shredding.py), so a
field slipped in undeclared would be kept in the clear for ever: this test fails first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from pydantic import Field

from contracts import generate
from contracts.envelope import PERSONAL, PERSONAL_KEY, EventData
from contracts.events import EVENT_MODELS, GeoPoint
from services.intake.erasure import scrubbed
from services.runtime.retention import ERASED_TEXT
from tests.unit.test_contracts import SAMPLES

ROOT = Path(__file__).resolve().parents[2]

LOOKS_PERSONAL = re.compile(
    r"(?:^|_)(?:text|address|addr|location|point|lat|lon|lng|phone|mobile|tel|name|contact|"
    r"comment|email|openid|note|caller|citizen|photo|idcard|id_card)(?:$|_)"
)
"""A field name that suggests a person's data: it must be declared, or explained below."""

NOT_PERSONAL: dict[tuple[str, str], str] = {
    ("whistle.case.opened", "data.matter_name"): "the matter catalogue's name of the matter",
    ("whistle.case.progress_recorded", "data.note"): (
        "the acting unit's record of what it did, written by staff: the county's record"
    ),
    ("whistle.case.resolved", "data.note"): (
        "the acting unit's record of how it resolved the case, written by staff"
    ),
    ("whistle.case.legal_review_requested", "data.note"): (
        "the acting unit's record of its penalty decision, written by staff, as in resolved"
    ),
    ("whistle.case.contacted", "data.note"): (
        "the acting unit's record of its contact with the citizen (联系群众), written by staff as "
        "the progress notes are; the citizen's own words stay in the tip"
    ),
    ("whistle.deadline.extension_decided", "data.note"): (
        "the county's note on an extension it decided"
    ),
    ("whistle.inspection.planned", "data.name"): "the inspection plan's name (城关镇综合查一次)",
}
# 综合查一次, 定岗巡查: what an officer found on the unit's own inspection, written by staff as the
# progress notes are; each finding's tip, made of it at intake, is sealed as every tip is.
NOT_PERSONAL.update(
    {
        ("whistle.inspection.completed", f"data.findings.{path}"): "the inspecting officer's "
        "record of what the unit found (no citizen's words or contact)"
        for path in ("text", "location", "location.lat", "location.lon", "resolution_note")
    }
)
# Every case step says in whose name the case is handled: a township's or a department's name.
NOT_PERSONAL.update(
    {
        (model.event_type, path): "the township or county department in whose name the case "
        "is handled (ActingFor)"
        for model in EVENT_MODELS
        if "acting_in_name_of" in model.model_fields
        for path in ("data.acting_in_name_of", "data.acting_in_name_of.name")
    }
)


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {
            **defs[ref.removeprefix("#/$defs/")],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def fields(schema: dict[str, Any]) -> Iterator[tuple[str, bool]]:
    """Every property of a CloudEvent schema, nested ones included, by path (``data.text``,
    ``data.location.lat``), with whether it or a field containing it is declared personal."""
    defs = schema.get("$defs", {})

    def walk(node: dict[str, Any], path: str, declared: bool) -> Iterator[tuple[str, bool]]:
        node = _resolve(node, defs)
        declared = declared or node.get(PERSONAL_KEY) is True
        for key in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(key, []):
                yield from walk(branch, path, declared)
        if isinstance(node.get("items"), dict):
            yield from walk(node["items"], path, declared)
        for name, child in node.get("properties", {}).items():
            child_path = f"{path}.{name}" if path else name
            child_declared = declared or _resolve(child, defs).get(PERSONAL_KEY) is True
            yield child_path, child_declared
            yield from walk(child, child_path, child_declared)

    yield from walk(schema, "", False)


def undeclared(event_type: str, schema: dict[str, Any]) -> list[str]:
    """The paths that look personal, are not declared and are not explained."""
    return sorted(
        {
            path
            for path, declared in fields(schema)
            if LOOKS_PERSONAL.search(path.rsplit(".", 1)[-1])
            and not declared
            and (event_type, path) not in NOT_PERSONAL
        }
    )


def published(event_type: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (ROOT / generate.schema_path(event_type)).read_text(encoding="utf-8")
    )
    return schema


@pytest.mark.parametrize("model", EVENT_MODELS, ids=[m.event_type for m in EVENT_MODELS])
def test_every_field_that_looks_personal_is_declared(model: type[EventData]) -> None:
    assert undeclared(model.event_type, published(model.event_type)) == []
    assert undeclared(model.event_type, generate.event_schema(model)) == []


@pytest.mark.parametrize("model", EVENT_MODELS, ids=[m.event_type for m in EVENT_MODELS])
def test_the_published_schema_and_the_model_declare_the_same_top_level_fields(
    model: type[EventData],
) -> None:
    """One source of truth: the ledger seals ``personal_fields()``, which must be what the
    schema publishes — and only top-level payload fields, which are what it seals whole."""
    declared = {path for path, is_personal in fields(published(model.event_type)) if is_personal}
    top = {path for path in declared if path.count(".") == 1}
    assert top == {f"data.{name}" for name in model.personal_fields()}
    assert all(any(path.startswith(f"{t}.") for t in top) for path in declared - top)


def test_the_explanations_name_real_fields() -> None:
    """An explanation left behind by a renamed field would excuse nothing: remove it."""
    for event_type, path in NOT_PERSONAL:
        assert path in {p for p, _ in fields(published(event_type))}, (event_type, path)


def test_every_event_with_personal_data_names_its_tip() -> None:
    """The ledger seals a payload's personal fields under its tip's key (``tip_id``)."""
    for model in EVENT_MODELS:
        if model.personal_fields():
            assert "tip_id" in model.model_fields, model.event_type


class Leaky(EventData):
    """What a careless change could publish: a caller's number and place, undeclared."""

    event_type = "whistle.test.leaky"

    tip_id: UUID
    caller_phone: str
    where: GeoPoint | None = None
    comment: str | None = Field(default=None, json_schema_extra=PERSONAL)


def test_an_event_with_an_undeclared_personal_field_is_caught() -> None:
    assert undeclared(Leaky.event_type, generate.event_schema(Leaky)) == [
        "data.caller_phone",
        "data.where.lat",
        "data.where.lon",
    ]
    assert Leaky.personal_fields() == ("comment",)


@pytest.mark.parametrize(
    "model",
    [m for m in EVENT_MODELS if m.personal_fields()],
    ids=[m.event_type for m in EVENT_MODELS if m.personal_fields()],
)
def test_an_event_scrubbed_of_its_personal_fields_is_still_a_valid_payload(
    model: type[EventData],
) -> None:
    """What intake leaves in its outbox of an erased tip's events (services/intake/erasure.py)
    may be sent again after a broker's loss: it must still be a valid event, with nothing of
    the citizen in it."""
    data = SAMPLES[model]().model_dump(mode="json")
    data.update({name: data.get(name) or "王五 13912345678" for name in model.personal_fields()})
    erased = scrubbed(model.event_type, data)
    model.model_validate(erased)
    assert {erased[name] for name in model.personal_fields()} <= {ERASED_TEXT, None}
    assert {k: v for k, v in erased.items() if k not in model.personal_fields()} == {
        k: v for k, v in data.items() if k not in model.personal_fields()
    }
