"""WeChat's signatures and safe-mode framing, checked against vectors built independently here
from the guide's description with hashlib and the raw AES-CBC primitive (no padding helper)."""

from __future__ import annotations

import base64
import hashlib
import struct
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from services.intake.wechat_crypto import (
    WeChatCryptoError,
    aes_key,
    decrypt,
    encrypt,
    signature,
    signature_matches,
    timestamp_fresh,
)

ENCODING_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
APP_ID = "wx0123456789abcdef"
PREFIX = bytes(range(16))


def _key() -> bytes:
    return base64.b64decode(ENCODING_AES_KEY + "=")


def _aes(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(key[:16]))


def _seal_by_hand(message: bytes, key: bytes, app_id: str, prefix: bytes) -> str:
    framed = prefix + struct.pack(">I", len(message)) + message + app_id.encode()
    pad = 32 - len(framed) % 32
    encryptor = _aes(key).encryptor()
    sealed = encryptor.update(framed + bytes([pad]) * pad) + encryptor.finalize()
    return base64.b64encode(sealed).decode()


def _open_by_hand(encrypted: str, key: bytes) -> bytes:
    decryptor = _aes(key).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def test_the_signature_is_sha1_over_the_sorted_parts() -> None:
    # Sorted as strings: "1234" < "1700000000" < "whistle".
    expected = hashlib.sha1(b"12341700000000whistle").hexdigest()
    assert signature("whistle", "1700000000", "1234") == expected
    assert signature_matches(expected.upper(), "1234", "whistle", "1700000000")
    assert not signature_matches(expected, "whistle", "1700000001", "1234")
    assert not signature_matches("", "whistle", "1700000000", "1234")


def test_the_message_signature_adds_the_encrypted_text() -> None:
    expected = hashlib.sha1("".join(sorted(["t", "1", "n", "Zm9v"])).encode()).hexdigest()
    assert signature("t", "1", "n", "Zm9v") == expected


def test_the_aes_key_is_the_base64_of_the_43_characters() -> None:
    assert aes_key(ENCODING_AES_KEY) == _key() and len(_key()) == 32
    for bad in (ENCODING_AES_KEY[:-1], ENCODING_AES_KEY + "A", ENCODING_AES_KEY[:-1] + "+"):
        with pytest.raises(ValueError):
            aes_key(bad)


@pytest.mark.parametrize("size", [0, 1, 12, 31, 32, 2000])
def test_a_message_sealed_by_hand_decrypts(size: int) -> None:
    message = ("诉" * size).encode()[:size] if size else b""
    sealed = _seal_by_hand(message, _key(), APP_ID, PREFIX)
    assert decrypt(sealed, _key(), APP_ID) == message


def test_encryption_frames_pads_to_32_bytes_and_matches_the_hand_made_vector() -> None:
    message = "<xml><Content>你好</Content></xml>".encode()
    sealed = encrypt(message, _key(), APP_ID, PREFIX)
    assert sealed == _seal_by_hand(message, _key(), APP_ID, PREFIX)
    opened = _open_by_hand(sealed, _key())
    assert len(opened) % 32 == 0
    assert opened[:16] == PREFIX
    assert struct.unpack(">I", opened[16:20]) == (len(message),)
    pad = opened[-1]
    assert 1 <= pad <= 32 and opened[-pad:] == bytes([pad]) * pad
    assert opened[20:-pad] == message + APP_ID.encode()


def test_a_frame_that_fills_whole_blocks_gets_a_whole_block_of_padding() -> None:
    message = b"x" * (64 - 16 - 4 - len(APP_ID))
    opened = _open_by_hand(encrypt(message, _key(), APP_ID, PREFIX), _key())
    assert len(opened) == 96 and opened[-32:] == bytes([32]) * 32


def test_what_does_not_decrypt_for_this_account_is_refused() -> None:
    sealed = encrypt(b"<xml/>", _key(), APP_ID, PREFIX)
    with pytest.raises(WeChatCryptoError, match="AppId"):
        decrypt(sealed, _key(), "wx_another_account")
    other_key = aes_key("B" * 43)
    with pytest.raises(WeChatCryptoError):
        decrypt(sealed, other_key, APP_ID)
    with pytest.raises(WeChatCryptoError, match="Base64"):
        decrypt("not base64!", _key(), APP_ID)
    with pytest.raises(WeChatCryptoError, match="blocks"):
        decrypt(base64.b64encode(b"\x00" * 16).decode(), _key(), APP_ID)
    with pytest.raises(WeChatCryptoError):
        decrypt("", _key(), APP_ID)


def test_a_length_beyond_the_frame_is_refused() -> None:
    framed = PREFIX + struct.pack(">I", 10_000) + b"<xml/>" + APP_ID.encode()
    pad = 32 - len(framed) % 32
    encryptor = _aes(_key()).encryptor()
    sealed = encryptor.update(framed + bytes([pad]) * pad) + encryptor.finalize()
    with pytest.raises(WeChatCryptoError, match="length"):
        decrypt(base64.b64encode(sealed).decode(), _key(), APP_ID)


def test_the_prefix_must_be_16_bytes() -> None:
    with pytest.raises(ValueError):
        encrypt(b"<xml/>", _key(), APP_ID, b"short")


NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=300)


@pytest.mark.parametrize(
    ("offset", "fresh"),
    [(0, True), (-300, True), (300, True), (-301, False), (301, False), (-(10**9), False)],
)
def test_a_callback_is_fresh_within_the_window_either_side_of_now(offset: int, fresh: bool) -> None:
    timestamp = str(int(NOW.timestamp()) + offset)
    assert timestamp_fresh(timestamp, NOW, WINDOW) is fresh


def test_a_timestamp_too_large_for_a_date_is_not_fresh() -> None:
    assert not timestamp_fresh("9" * 20, NOW, WINDOW)
