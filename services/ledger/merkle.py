"""RFC 9162 (Certificate Transparency v2) hashing of ledger entries."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """RFC 8785 JSON canonicalisation: the same event always hashes the same."""
    return rfc8785.dumps(document)


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()
