"""Crypto-shredding (services/ledger/shredding.py): what the ledger seals, how it opens, and
that a sealed value opens only where it was sealed and only while its key exists."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from contracts.envelope import new_event
from contracts.events import CaseOpened, ContactRef, GeoPoint, TipReceived
from services.ledger.merkle import canonical_bytes
from services.ledger.shredding import (
    SEALED,
    UNREADABLE,
    is_sealed,
    new_key,
    reveal,
    seal,
    to_seal,
)
from services.runtime.retention import ERASED_TEXT

NOW = datetime(2026, 11, 21, 8, tzinfo=UTC)
TIP = TipReceived(
    tip_id=UUID("01956f3a-0000-7000-8000-000000000001"),
    tracking_no="QX20261121-000001",
    channel="web",
    text="幸福路8号王五家门口占道",
    location=GeoPoint(lat=38.76, lon=113.22),
    address="幸福路8号",
    contact=ContactRef(masked_phone="****1234", phone_hash="ab"),
    received_at=NOW,
)
EVENT = new_event("whistle/intake", str(TIP.tip_id), TIP, NOW)
TYPE = TipReceived.event_type


def test_every_personal_field_given_is_sealed_and_nothing_else() -> None:
    fields = to_seal(TYPE, EVENT.data)
    assert fields == ["text", "location", "address", "contact"]  # resolution_note is null
    sealed = seal(EVENT.data, fields, new_key(), EVENT.source, EVENT.id)
    assert all(is_sealed(sealed[name]) for name in fields)
    assert sealed["resolution_note"] is None and sealed["tracking_no"] == TIP.tracking_no
    document = canonical_bytes({**EVENT.to_json(), "data": sealed})
    assert "幸福路".encode() not in document and b"****1234" not in document


def test_sealed_fields_open_with_the_key_and_read_erased_without_it() -> None:
    key = new_key()
    sealed = seal(EVENT.data, to_seal(TYPE, EVENT.data), key, EVENT.source, EVENT.id)
    opened = reveal(TYPE, sealed, key, EVENT.source, EVENT.id)
    assert opened == {name: EVENT.data[name] for name in ("text", "location", "address", "contact")}
    assert set(reveal(TYPE, sealed, None, EVENT.source, EVENT.id).values()) == {ERASED_TEXT}


def test_a_sealed_value_opens_only_in_its_own_event_field_and_key() -> None:
    key = new_key()
    sealed = seal(EVENT.data, ["text", "address"], key, EVENT.source, EVENT.id)
    moved = {**sealed, "text": sealed["address"]}
    assert reveal(TYPE, moved, key, EVENT.source, EVENT.id)["text"] == UNREADABLE
    assert reveal(TYPE, sealed, key, EVENT.source, "another-event")["text"] == UNREADABLE
    assert reveal(TYPE, sealed, new_key(), EVENT.source, EVENT.id)["text"] == UNREADABLE
    garbled = {**sealed, "text": {SEALED: "not base64!"}}
    assert reveal(TYPE, garbled, key, EVENT.source, EVENT.id)["text"] == UNREADABLE


def test_two_seals_of_the_same_words_differ() -> None:
    """A random nonce each time: equal texts cannot be spotted by equal ciphertext."""
    key = new_key()
    first = seal(EVENT.data, ["text"], key, EVENT.source, EVENT.id)
    second = seal(EVENT.data, ["text"], key, EVENT.source, EVENT.id)
    assert first["text"] != second["text"]


def test_an_event_without_personal_fields_is_left_alone() -> None:
    opened = CaseOpened(
        case_id=UUID(int=1),
        tip_id=TIP.tip_id,
        matter_code="SC-001",
        confidence=0.9,
        township_code="T03",
        urgency="general",
        catalogue_version="v",
        explanation=[],
    )
    assert to_seal(CaseOpened.event_type, opened.model_dump(mode="json")) == []
    assert to_seal("whistle.unknown.type", {"text": "x"}) == []
