"""Signed tree heads: what exactly is signed, that any change breaks the signature, and where
the signing key comes from."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.ledger.heads import (
    HeadSigner,
    TreeHead,
    load_public_key,
    public_key_pem,
    verify_head,
)
from services.ledger.issuer import signing_key
from services.ledger.merkle import EMPTY_ROOT, leaf_hash
from services.runtime.settings import Settings

ROOT = leaf_hash(b"root")
MOMENT = datetime(2026, 11, 21, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=8)))


@pytest.fixture
def signer() -> HeadSigner:
    return HeadSigner(Ed25519PrivateKey.generate())


def test_the_signed_bytes_are_the_canonical_json_of_the_unsigned_fields(
    signer: HeadSigner,
) -> None:
    head = signer.sign(41, ROOT, MOMENT)
    assert head.timestamp == "2026-11-21T00:30:15.123456Z"
    assert head.signed_bytes() == (
        b'{"root_hash":"' + ROOT.hex().encode() + b'","timestamp":"2026-11-21T00:30:15.123456Z",'
        b'"tree_size":41}'
    )
    signer.public_key().verify(head.signature, head.signed_bytes())
    assert verify_head(head, signer.public_key())


def test_a_head_survives_json_and_any_change_breaks_its_signature(signer: HeadSigner) -> None:
    head = signer.sign(41, ROOT, MOMENT)
    again = TreeHead.from_json(head.to_json())
    assert again == head and verify_head(again, signer.public_key())
    for changed in (
        dataclasses.replace(head, tree_size=42),
        dataclasses.replace(head, root_hash=EMPTY_ROOT),
        dataclasses.replace(head, timestamp="2026-11-21T00:30:15.123457Z"),
    ):
        assert not verify_head(changed, signer.public_key())
    assert not verify_head(head, HeadSigner(Ed25519PrivateKey.generate()).public_key())


def test_the_public_key_round_trips_through_pem(signer: HeadSigner) -> None:
    key = load_public_key(public_key_pem(signer.public_key()))
    assert verify_head(signer.sign(0, EMPTY_ROOT, datetime.now(UTC)), key)
    with pytest.raises(ValueError):
        load_public_key(b"not a key")


@pytest.mark.parametrize(
    ("field", "value", "complaint"),
    [
        ("tree_size", -1, "tree_size"),
        ("tree_size", True, "tree_size"),
        ("root_hash", "abc", "root_hash"),
        ("signature", "00" * 63, "signature"),
        ("timestamp", "2026-11-21T00:30:15Z", "timestamp"),
        ("timestamp", "2026-11-21 00:30:15.123456", "timestamp"),
    ],
)
def test_a_malformed_head_is_refused_with_the_field_named(
    signer: HeadSigner, field: str, value: object, complaint: str
) -> None:
    document = {**signer.sign(41, ROOT, MOMENT).to_json(), field: value}
    with pytest.raises(ValueError, match=complaint):
        TreeHead.from_json(document)
    with pytest.raises(ValueError, match="signature"):
        TreeHead.from_json({k: v for k, v in document.items() if k != "signature"})


def test_a_development_key_is_made_once_but_a_configured_one_is_never_replaced(
    tmp_path: Path,
) -> None:
    development = Settings(home=tmp_path)
    key = signing_key(development)
    assert development.ledger_public_key_path.read_bytes() == public_key_pem(key.public_key())
    again = signing_key(development)
    assert public_key_pem(again.public_key()) == public_key_pem(key.public_key())

    configured = Settings(home=tmp_path, ledger_signing_key_file=tmp_path / "elsewhere.pem")
    with pytest.raises(RuntimeError, match=r"elsewhere\.pem does not exist"):
        signing_key(configured)
    assert not configured.ledger_signing_key_path.exists()
