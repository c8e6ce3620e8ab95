"""Tracking numbers citizens read out on the phone, and the access codes that guard them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from uuid import UUID
from zoneinfo import ZoneInfo


def new_tracking_no(now: datetime, timezone: str) -> str:
    """``QX`` + local date + 6 random digits, e.g. ``QX20261121-482913``."""
    local = now.astimezone(ZoneInfo(timezone))
    return f"QX{local:%Y%m%d}-{secrets.randbelow(10**6):06d}"


def new_access_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def hash_access_code(tip_id: UUID, code: str) -> str:
    return hashlib.sha256(tip_id.bytes + code.encode()).hexdigest()


def access_code_matches(tip_id: UUID, code: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_access_code(tip_id, code), stored_hash)
