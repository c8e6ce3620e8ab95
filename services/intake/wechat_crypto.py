"""WeChat official account callbacks: signatures and the safe mode's AES message framing.

As WeChat's message encryption guide (消息加解密说明) specifies it:

- the server signature is the hex SHA-1 of token, timestamp and nonce sorted and joined;
  the message signature (``msg_signature``) adds the ``Encrypt`` text to the sorted list;
- the AES key is ``Base64_Decode(EncodingAESKey + "=")``: 43 characters give 32 bytes;
- a message is framed as ``random(16 bytes) + length(4 bytes, network order) + message +
  AppId``, padded PKCS#7 to a multiple of 32 bytes (not AES's 16), encrypted with AES-256-CBC
  whose IV is the key's first 16 bytes, and Base64-encoded.

Beyond the guide, the signed timestamp must be near intake's clock (``timestamp_fresh``), so
that a signed request cannot be kept and sent again later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from datetime import datetime, timedelta

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# WeChat pads to its own 32-byte block, which PKCS#7 allows (the block size is a parameter).
PAD_BITS = 32 * 8
RANDOM_BYTES = 16
LENGTH = struct.Struct(">I")
ENCODING_AES_KEY = re.compile(r"^[A-Za-z0-9]{43}$")


class WeChatCryptoError(ValueError):
    """A ciphertext that does not decrypt to a well-framed message for this account."""


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 over the parts sorted as strings and concatenated."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_matches(claimed: str, *parts: str) -> bool:
    return hmac.compare_digest(claimed.lower().encode(), signature(*parts).encode())


def timestamp_fresh(timestamp: str, now: datetime, window: timedelta) -> bool:
    """Whether a callback's ``timestamp`` (seconds since the epoch, as signed) is within
    ``window`` of ``now``, either way: a signed request captured and sent again later is not."""
    return abs(int(timestamp) - now.timestamp()) <= window.total_seconds()


def aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey set in WeChat's console."""
    if not ENCODING_AES_KEY.fullmatch(encoding_aes_key):
        raise ValueError("the EncodingAESKey must be 43 letters and digits")
    return base64.b64decode(encoding_aes_key + "=")


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def encrypt(message: bytes, key: bytes, app_id: str, prefix: bytes) -> str:
    """Frame, pad and encrypt ``message``; ``prefix`` is the 16 random bytes WeChat asks for
    (the caller draws them, so the function has no hidden input)."""
    if len(prefix) != RANDOM_BYTES:
        raise ValueError("the random prefix must be 16 bytes")
    framed = prefix + LENGTH.pack(len(message)) + message + app_id.encode()
    padder = padding.PKCS7(PAD_BITS).padder()
    padded = padder.update(framed) + padder.finalize()
    encryptor = _cipher(key).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(encrypted: str, key: bytes, app_id: str) -> bytes:
    """The message inside an ``Encrypt`` text, checked to be framed for ``app_id``."""
    try:
        ciphertext = base64.b64decode(encrypted, validate=True)
    except binascii.Error as exc:
        raise WeChatCryptoError("Encrypt is not Base64") from exc
    if not ciphertext or len(ciphertext) % (PAD_BITS // 8):
        raise WeChatCryptoError("the ciphertext is not a whole number of 32-byte blocks")
    decryptor = _cipher(key).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(PAD_BITS).unpadder()
    try:
        framed = unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise WeChatCryptoError("bad padding: wrong key or damaged message") from exc
    body = framed[RANDOM_BYTES:]
    if len(body) < LENGTH.size:
        raise WeChatCryptoError("the frame is too short")
    (length,) = LENGTH.unpack_from(body)
    message, trailer = body[LENGTH.size : LENGTH.size + length], body[LENGTH.size + length :]
    if len(message) != length:
        raise WeChatCryptoError("the frame's length exceeds its content")
    if not hmac.compare_digest(trailer, app_id.encode()):
        raise WeChatCryptoError("the message is framed for another AppId")
    return message
