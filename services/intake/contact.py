"""Citizens' contact data: sealed at rest, masked in events and logs, hashed to spot repeats."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.intake.tracking import CodeCheck, check_access_code, hash_access_code

PHONE = re.compile(r"^\+?[0-9][0-9\- ]{5,18}[0-9]$")


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"[\s\-]", "", phone)
    return digits.removeprefix("+86")


def mask_phone(phone: str) -> str:
    """``13812341234`` → ``138****1234``: enough for a citizen to recognise, not to call."""
    digits = normalise_phone(phone)
    if len(digits) <= 7:
        return "*" * len(digits)
    return digits[:3] + "*" * (len(digits) - 7) + digits[-4:]


def phone_tail(phone: str) -> str:
    """``13812341234`` → ``****1234``: what an event may say of a number, if anything."""
    digits = normalise_phone(phone)
    return "****" + digits[-4:] if len(digits) > 4 else "****"


# Mainland mobiles and landlines with an area code, with the separators people type.
_PHONE_IN_TEXT = re.compile(
    r"(?<!\d)(?:\+?86[\s-]?)?(?:1[3-9]\d(?:[\s-]?\d{4}){2}|0\d{2,3}-?\d{7,8})(?!\d)"
)
_EMAIL_IN_TEXT = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


def redact_contacts(text: str, mask: Callable[[str], str] = mask_phone) -> str:
    """``text`` without the numbers and e-mail addresses a citizen typed into it: each number
    masked by ``mask``, each address ``***@***``. Published descriptions mask as
    :func:`mask_phone` does; events keep only the last four digits (:func:`redact_for_events`)."""
    text = _PHONE_IN_TEXT.sub(lambda m: mask(m.group()), text)
    return _EMAIL_IN_TEXT.sub("***@***", text)


def redact_for_events(text: str) -> str:
    """Free text as events carry it (issue #20): no consumer calls a citizen back from an
    event — intake does, from the sealed contact — so none of the numbers they typed."""
    return redact_contacts(text, phone_tail)


class ContactVault:
    """AES-256-GCM sealing and an HMAC of the phone number, both from one 32-byte key; and
    the keyed hash of access codes, with the access-code key (services/intake/tracking.py)."""

    def __init__(self, key: bytes, access_code_key: bytes | None = None) -> None:
        if len(key) != 32:
            raise ValueError("the contact key must be 32 bytes")
        self._aead = AESGCM(hashlib.sha256(b"whistle-contact-seal" + key).digest())
        self._mac_key = hashlib.sha256(b"whistle-contact-hash" + key).digest()
        self._access_code_key = access_code_key

    @classmethod
    def from_file(cls, path: Path, access_code_key: bytes | None = None) -> ContactVault:
        """Load the key, creating a development key on first use."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(32))
            path.chmod(0o600)
        return cls(path.read_bytes(), access_code_key)

    def seal(self, name: str | None, phone: str | None) -> bytes:
        plaintext = json.dumps({"name": name, "phone": phone}, ensure_ascii=False).encode()
        return self._seal(plaintext, b"contact")

    def open(self, sealed: bytes) -> dict[str, str | None]:
        opened: dict[str, str | None] = json.loads(self._open(sealed, b"contact"))
        return opened

    def seal_access_code(self, code: str) -> bytes:
        """Kept so that a retried submission gets its original answer back, code included."""
        return self._seal(code.encode(), b"access-code")

    def open_access_code(self, sealed: bytes) -> str:
        return self._open(sealed, b"access-code").decode()

    def hash_access_code(self, tip_id: UUID, code: str) -> str:
        return hash_access_code(self._code_key(), tip_id, code)

    def check_access_code(self, tip_id: UUID, code: str, stored: str) -> CodeCheck:
        return check_access_code(self._code_key(), tip_id, code, stored)

    def _code_key(self) -> bytes:
        if not self._access_code_key:
            raise RuntimeError("this vault was made without the access-code key")
        return self._access_code_key

    def _seal(self, plaintext: bytes, purpose: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, purpose)

    def _open(self, sealed: bytes, purpose: bytes) -> bytes:
        return self._aead.decrypt(sealed[:12], sealed[12:], purpose)

    def phone_hash(self, phone: str) -> str:
        return hmac.new(self._mac_key, normalise_phone(phone).encode(), hashlib.sha256).hexdigest()

    def wechat_user_hash(self, openid: str) -> str:
        """A WeChat follower's OpenID, keyed like a phone number but never equal to one."""
        tagged = b"wechat-openid:" + openid.encode()
        return hmac.new(self._mac_key, tagged, hashlib.sha256).hexdigest()
