"""Tracking numbers citizens read out on the phone, and the access codes that guard them.

An access code is six digits: a million values, which a bare hash would give away to anyone
who reads the table (hash them all). It is stored as ``hmac-sha256:<hex>``, keyed with
``WHISTLE_ACCESS_CODE_KEY`` and bound to its tip. Hashes stored before the key existed are
bare SHA-256 of the same bytes: ``sha256:<hex>`` (marked so by migration
intake_0009_access_codes) or plain ``<hex>`` (written by a replica not yet upgraded). They still
verify, and say to be rehashed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from enum import Enum
from uuid import UUID
from zoneinfo import ZoneInfo

KEYED = "hmac-sha256:"
LEGACY = "sha256:"


def new_tracking_no(now: datetime, timezone: str, prefix: str = "QX") -> str:
    """The county's two-letter prefix + local date + 6 random digits, e.g.
    ``QX20261121-482913``: unique across the city's counties, and it says where it belongs."""
    local = now.astimezone(ZoneInfo(timezone))
    return f"{prefix}{local:%Y%m%d}-{secrets.randbelow(10**6):06d}"


def new_access_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def hash_access_code(key: bytes, tip_id: UUID, code: str) -> str:
    """What is stored for ``code``: its HMAC-SHA256 under ``key``, bound to the tip."""
    return KEYED + hmac.new(key, tip_id.bytes + code.encode(), hashlib.sha256).hexdigest()


class CodeCheck(Enum):
    WRONG = "wrong"
    RIGHT = "right"
    # Right, against a hash of an older scheme: store hash_access_code's in its place.
    RIGHT_REHASH = "right-rehash"


def check_access_code(key: bytes, tip_id: UUID, code: str, stored: str) -> CodeCheck:
    if stored.startswith(KEYED):
        right = hmac.compare_digest(hash_access_code(key, tip_id, code), stored)
        return CodeCheck.RIGHT if right else CodeCheck.WRONG
    bare = stored.removeprefix(LEGACY)
    if ":" in bare:
        return CodeCheck.WRONG  # a scheme this version does not know
    right = hmac.compare_digest(hashlib.sha256(tip_id.bytes + code.encode()).hexdigest(), bare)
    return CodeCheck.RIGHT_REHASH if right else CodeCheck.WRONG
