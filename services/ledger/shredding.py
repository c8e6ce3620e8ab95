"""Crypto-shredding: how the ledger keeps a citizen's personal data in an append-only log and
can still forget it.

Before an event is canonicalised and hashed, each of its payload's personal fields (declared
in the contracts with ``"x-personal": true``, ``EventData.personal_fields``) is replaced by
``{"x-sealed": "<base64 of nonce ‖ AES-256-GCM ciphertext>"}``: the field's JSON, sealed under
its tip's key with a random 96-bit nonce, the associated data binding it to the event (source
and id) and the field's path, so a sealed value moved to another entry or field does not open.
The Merkle leaf commits to these bytes, ciphertext included. Destroying the tip's key
(services/ledger/keys.py) makes the fields unreadable for good and changes no byte the tree
committed to: every proof still verifies. Pure functions; the keys come from the caller.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.events import EVENT_TYPES
from services.runtime.retention import ERASED_TEXT

SEALED = "x-sealed"
KEY_BYTES = 32
NONCE_BYTES = 12
UNREADABLE = "无法解密：密文与记录不符"
"""Shown for a sealed field whose key exists but does not open it (the entry was altered)."""


def personal_fields(event_type: str) -> tuple[str, ...]:
    """The personal fields the contracts declare for an event type; none for a type this build
    does not know (it is recorded as it came)."""
    model = EVENT_TYPES.get(event_type)
    return model.personal_fields() if model else ()


def to_seal(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """The personal fields of ``data`` that hold something (an absent or null field says only
    that the citizen gave none, and stays as it is)."""
    return [name for name in personal_fields(event_type) if data.get(name) is not None]


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def associated_data(source: str, event_id: str, field: str) -> bytes:
    return json.dumps([source, event_id, f"data.{field}"], ensure_ascii=False).encode()


def seal(
    data: Mapping[str, Any],
    fields: Sequence[str],
    key: bytes,
    source: str,
    event_id: str,
    nonce: Callable[[int], bytes] = os.urandom,
) -> dict[str, Any]:
    """``data`` with each of ``fields`` sealed under ``key``."""
    aead = AESGCM(key)
    sealed = dict(data)
    for name in fields:
        plaintext = json.dumps(data[name], ensure_ascii=False, separators=(",", ":")).encode()
        iv = nonce(NONCE_BYTES)
        ciphertext = aead.encrypt(iv, plaintext, associated_data(source, event_id, name))
        sealed[name] = {SEALED: base64.b64encode(iv + ciphertext).decode()}
    return sealed


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {SEALED} and isinstance(value[SEALED], str)


def sealed_fields(event_type: str, data: Mapping[str, Any]) -> list[str]:
    return [name for name in personal_fields(event_type) if is_sealed(data.get(name))]


def reveal(
    event_type: str, data: Mapping[str, Any], key: bytes | None, source: str, event_id: str
) -> dict[str, Any]:
    """Each sealed personal field of ``data``, opened with ``key``; :data:`ERASED_TEXT` for
    every one when the key was destroyed (``key`` None)."""
    opened: dict[str, Any] = {}
    aead = AESGCM(key) if key is not None else None
    for name in sealed_fields(event_type, data):
        if aead is None:
            opened[name] = ERASED_TEXT
            continue
        try:
            raw = base64.b64decode(data[name][SEALED], validate=True)
            plaintext = aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data(source, event_id, name)
            )
        except (InvalidTag, ValueError):
            opened[name] = UNREADABLE
            continue
        opened[name] = json.loads(plaintext)
    return opened
