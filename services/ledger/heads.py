"""Signed tree heads: the log's size and root at a moment, signed with the ledger's Ed25519 key.

What is signed is the RFC 8785 canonical JSON of the three unsigned fields,

    {"root_hash":"<64 hex digits>","timestamp":"2026-11-21T08:00:00.000000Z","tree_size":41}

(keys sorted, no whitespace, UTF-8), and the signature is Ed25519 (RFC 8032) over those bytes.
Hashes and signatures travel as lower-case hex; the timestamp is RFC 3339 in UTC with
microseconds and a ``Z``, and is signed exactly as written, so a head is checked without
parsing or reformatting anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

HASH_BYTES = 32
SIGNATURE_BYTES = 64


TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_timestamp(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a tree head's time must carry a UTC offset")
    return moment.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(timestamp: str) -> datetime:
    """The moment a head names; ValueError unless written exactly as heads are signed."""
    try:
        moment = datetime.strptime(timestamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        moment = None
    if moment is None or format_timestamp(moment) != timestamp:
        raise ValueError(f"timestamp {timestamp!r} is not in the form {TIMESTAMP_FORMAT}")
    return moment


def signed_bytes(tree_size: int, root_hash: bytes, timestamp: str) -> bytes:
    return rfc8785.dumps(
        {"root_hash": root_hash.hex(), "timestamp": timestamp, "tree_size": tree_size}
    )


@dataclass(frozen=True)
class TreeHead:
    tree_size: int
    root_hash: bytes
    timestamp: str
    signature: bytes

    @property
    def issued_at(self) -> datetime:
        return parse_timestamp(self.timestamp)

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.tree_size, self.root_hash, self.timestamp)

    def to_json(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp": self.timestamp,
            "signature": self.signature.hex(),
        }

    @classmethod
    def from_json(cls, document: Any) -> TreeHead:
        """A head as served or exported; ValueError says what is wrong with it."""
        if not isinstance(document, dict):
            raise ValueError("a tree head is a JSON object")
        try:
            size, root, timestamp, signature = (
                document["tree_size"],
                document["root_hash"],
                document["timestamp"],
                document["signature"],
            )
        except KeyError as exc:
            raise ValueError(f"the tree head has no {exc.args[0]!r}") from exc
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("tree_size must be a non-negative integer")
        if not isinstance(timestamp, str):
            raise ValueError("timestamp must be a string")
        parse_timestamp(timestamp)
        return cls(
            size,
            hex_bytes(root, HASH_BYTES, "root_hash"),
            timestamp,
            hex_bytes(signature, SIGNATURE_BYTES, "signature"),
        )


def hex_bytes(value: Any, length: int, name: str) -> bytes:
    """``length`` bytes written as hex; ValueError naming ``name`` otherwise."""
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != length:
        raise ValueError(f"{name} must be {length * 2} hex digits")
    return raw


class HeadSigner:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key

    def sign(self, tree_size: int, root_hash: bytes, moment: datetime) -> TreeHead:
        timestamp = format_timestamp(moment)
        signature = self._key.sign(signed_bytes(tree_size, root_hash, timestamp))
        return TreeHead(tree_size, root_hash, timestamp, signature)

    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()


def public_key_pem(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem)
    except UnsupportedAlgorithm as exc:
        raise ValueError(str(exc)) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the ledger's public key is an Ed25519 key")
    return key


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the ledger's signing key must be an Ed25519 key")
    return key


def verify_head(head: TreeHead, key: Ed25519PublicKey) -> bool:
    try:
        key.verify(head.signature, head.signed_bytes())
    except InvalidSignature:
        return False
    return True
