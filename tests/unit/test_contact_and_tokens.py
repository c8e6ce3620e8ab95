"""Citizens' contact data, tracking numbers and access codes, and the services' bearer tokens."""

from __future__ import annotations

import hashlib
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from cryptography.exceptions import InvalidTag

from services.intake.contact import PHONE, ContactVault, mask_phone, normalise_phone
from services.intake.tracking import (
    CodeCheck,
    check_access_code,
    hash_access_code,
    new_access_code,
    new_tracking_no,
)
from services.runtime.auth import (
    ROLES,
    Principal,
    TokenVerifier,
    ensure_dev_keys,
    issue_token,
)
from services.runtime.problems import Problem

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
NAME = "王秀兰"
MOBILE = "13812341234"

# ---------------------------------------------------------------- phone numbers


@pytest.mark.parametrize(
    "phone",
    ["13812341234", "+86 138-1234-1234", "+8613812341234", "138 1234 1234", "138-1234-1234"],
)
def test_phone_formats_normalise_and_mask_alike(phone: str) -> None:
    assert normalise_phone(phone) == MOBILE
    assert mask_phone(phone) == "138****1234"


def test_masking_hides_the_middle_digits() -> None:
    masked = mask_phone(MOBILE)
    assert masked == "138****1234"
    assert "1234" + "1234" not in masked


def test_short_numbers_are_masked_entirely() -> None:
    assert mask_phone("12345") == "*****"
    assert set(mask_phone("1234567")) == {"*"}


def test_landline_keeps_area_code_prefix_and_last_four() -> None:
    assert mask_phone("0351-1234567") == "035****4567"


@pytest.mark.parametrize("phone", [MOBILE, "+86 138-1234-1234", "0351-1234567"])
def test_phone_pattern_accepts_real_numbers(phone: str) -> None:
    assert PHONE.match(phone)


@pytest.mark.parametrize("phone", ["abc", "12", "138123412341234123412", "13812341234x"])
def test_phone_pattern_refuses_junk(phone: str) -> None:
    assert not PHONE.match(phone)


# ---------------------------------------------------------------- the contact vault


def test_sealed_contact_opens_to_the_same_name_and_phone() -> None:
    vault = ContactVault(KEY_A)
    sealed = vault.seal(NAME, MOBILE)
    assert vault.open(sealed) == {"name": NAME, "phone": MOBILE}


def test_sealed_bytes_contain_neither_name_nor_phone() -> None:
    sealed = ContactVault(KEY_A).seal(NAME, MOBILE)
    for secret in (NAME.encode(), NAME.encode("gbk"), MOBILE.encode(), b"1234"):
        assert secret not in sealed


def test_none_fields_survive_sealing() -> None:
    vault = ContactVault(KEY_A)
    assert vault.open(vault.seal(None, MOBILE)) == {"name": None, "phone": MOBILE}
    assert vault.open(vault.seal(NAME, None)) == {"name": NAME, "phone": None}


def test_two_seals_of_the_same_contact_differ() -> None:
    vault = ContactVault(KEY_A)
    first, second = vault.seal(NAME, MOBILE), vault.seal(NAME, MOBILE)
    assert first != second
    assert first[:12] != second[:12]  # a fresh nonce each time
    assert vault.open(first) == vault.open(second)


@pytest.mark.parametrize("position", [0, 11, 12, 20, -1])
def test_tampered_seal_fails_to_open(position: int) -> None:
    vault = ContactVault(KEY_A)
    sealed = bytearray(vault.seal(NAME, MOBILE))
    sealed[position] ^= 0x01
    with pytest.raises(InvalidTag):
        vault.open(bytes(sealed))


def test_truncated_seal_fails_to_open() -> None:
    vault = ContactVault(KEY_A)
    sealed = vault.seal(NAME, MOBILE)
    with pytest.raises(InvalidTag):
        vault.open(sealed[:-1])


def test_seal_does_not_open_under_another_key() -> None:
    sealed = ContactVault(KEY_A).seal(NAME, MOBILE)
    with pytest.raises(InvalidTag):
        ContactVault(KEY_B).open(sealed)


def test_phone_hash_is_stable_across_formatting() -> None:
    vault = ContactVault(KEY_A)
    variants = {vault.phone_hash(p) for p in (MOBILE, "+86 138-1234-1234", "138 1234 1234")}
    assert len(variants) == 1
    assert vault.phone_hash(MOBILE) == ContactVault(KEY_A).phone_hash(MOBILE)


def test_phone_hash_distinguishes_numbers_and_keys() -> None:
    vault = ContactVault(KEY_A)
    assert vault.phone_hash(MOBILE) != vault.phone_hash("13812341235")
    assert vault.phone_hash(MOBILE) != ContactVault(KEY_B).phone_hash(MOBILE)
    assert MOBILE not in vault.phone_hash(MOBILE)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_contact_key_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ValueError):
        ContactVault(b"k" * size)


def test_key_file_is_created_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "contact.key"
    first = ContactVault.from_file(path)
    sealed = first.seal(NAME, MOBILE)
    assert len(path.read_bytes()) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = ContactVault.from_file(path)
    assert second.open(sealed) == {"name": NAME, "phone": MOBILE}
    assert second.phone_hash(MOBILE) == first.phone_hash(MOBILE)


# ---------------------------------------------------------------- tracking numbers, access codes

TRACKING = re.compile(r"QX\d{8}-\d{6}")


def test_tracking_number_shape() -> None:
    for _ in range(50):
        assert TRACKING.fullmatch(new_tracking_no(datetime.now(UTC), "Asia/Shanghai"))


def test_tracking_number_uses_the_county_local_date() -> None:
    # 17:00Z on 21 Nov is 01:00 on 22 Nov in the county.
    number = new_tracking_no(datetime(2026, 11, 21, 17, 0, tzinfo=UTC), "Asia/Shanghai")
    assert TRACKING.fullmatch(number)
    assert number.startswith("QX20261122-")
    # Just before local midnight it is still the 21st.
    number = new_tracking_no(datetime(2026, 11, 21, 15, 59, tzinfo=UTC), "Asia/Shanghai")
    assert number.startswith("QX20261121-")


def test_access_code_is_six_digits() -> None:
    for _ in range(50):
        assert re.fullmatch(r"\d{6}", new_access_code())


CODE_KEY = b"k" * 32


def test_access_code_check_accepts_right_and_rejects_wrong() -> None:
    tip = uuid4()
    code = new_access_code()
    stored = hash_access_code(CODE_KEY, tip, code)
    assert stored.startswith("hmac-sha256:") and code not in stored
    assert check_access_code(CODE_KEY, tip, code, stored) is CodeCheck.RIGHT
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert check_access_code(CODE_KEY, tip, wrong, stored) is CodeCheck.WRONG
    assert check_access_code(CODE_KEY, tip, "", stored) is CodeCheck.WRONG
    assert check_access_code(CODE_KEY, uuid4(), code, stored) is CodeCheck.WRONG  # its tip's
    # Without the key, the million codes cannot be tried against the stored hash.
    assert check_access_code(b"x" * 32, tip, code, stored) is CodeCheck.WRONG


def test_a_bare_sha256_hash_still_verifies_and_asks_to_be_rehashed() -> None:
    tip, code = uuid4(), "123456"
    bare = hashlib.sha256(tip.bytes + code.encode()).hexdigest()
    for stored in (bare, f"sha256:{bare}"):
        assert check_access_code(CODE_KEY, tip, code, stored) is CodeCheck.RIGHT_REHASH
        assert check_access_code(CODE_KEY, tip, "654321", stored) is CodeCheck.WRONG
    assert check_access_code(CODE_KEY, tip, code, f"md5:{bare}") is CodeCheck.WRONG


# ---------------------------------------------------------------- tokens

ISSUER = "whistle-dev"
AUDIENCE = "whistle"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[bytes, bytes]:
    private, public = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    ensure_dev_keys(private, public)
    return private.read_bytes(), public.read_bytes()


@pytest.fixture
def other_keys(tmp_path: Path) -> tuple[bytes, bytes]:
    private, public = tmp_path / "other" / "jwt.key", tmp_path / "other" / "jwt.pub"
    ensure_dev_keys(private, public)
    return private.read_bytes(), public.read_bytes()


def _token(private: bytes, **overrides) -> str:
    claims = {
        "subject": "u-dispatch-t01",
        "roles": ["dispatcher"],
        "scopes": ["township:T01", "grid:T01V01G01"],
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "now": datetime.now(UTC),
    }
    claims.update(overrides)
    return issue_token(private, **claims)


def _refused(verifier: TokenVerifier, token: str) -> Problem:
    with pytest.raises(Problem) as info:
        verifier.verify(token)
    assert info.value.status == 401
    assert info.value.headers == {"WWW-Authenticate": "Bearer"}
    return info.value


def test_dev_keys_are_created_once(tmp_path: Path) -> None:
    private, public = tmp_path / "k" / "jwt.key", tmp_path / "k" / "jwt.pub"
    ensure_dev_keys(private, public)
    before = private.read_bytes(), public.read_bytes()
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    ensure_dev_keys(private, public)
    assert (private.read_bytes(), public.read_bytes()) == before


def test_issue_and_verify_round_trip(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    token = _token(private, roles=["dispatcher", "auditor"])
    principal = TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE).verify(token)
    assert principal == Principal(
        subject="u-dispatch-t01",
        roles=frozenset({"dispatcher", "auditor"}),
        scopes=frozenset({"township:T01", "grid:T01V01G01"}),
    )


@pytest.mark.parametrize("role", ROLES)
def test_every_known_role_can_be_issued(keys: tuple[bytes, bytes], role: str) -> None:
    private, public = keys
    principal = TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE).verify(
        _token(private, roles=[role])
    )
    assert principal.roles == {role}


@pytest.mark.parametrize("roles", [["mayor"], ["dispatcher", "superuser"], ["Dispatcher"]])
def test_unknown_role_is_refused_at_issue(keys: tuple[bytes, bytes], roles: list[str]) -> None:
    with pytest.raises(ValueError, match="unknown role"):
        _token(keys[0], roles=roles)


def test_token_signed_by_another_key_is_rejected(
    keys: tuple[bytes, bytes], other_keys: tuple[bytes, bytes]
) -> None:
    verifier = TokenVerifier(keys[1], issuer=ISSUER, audience=AUDIENCE)
    _refused(verifier, _token(other_keys[0]))


def test_expired_token_is_rejected(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    token = _token(private, now=datetime.now(UTC) - timedelta(hours=2), lifetime=timedelta(hours=1))
    _refused(TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE), token)


def test_token_for_another_audience_is_rejected(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    token = _token(private, audience="some-other-service")
    _refused(TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE), token)


def test_token_from_another_issuer_is_rejected(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    token = _token(private, issuer="someone-else")
    _refused(TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE), token)


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c"])
def test_garbage_is_rejected(keys: tuple[bytes, bytes], garbage: str) -> None:
    _refused(TokenVerifier(keys[1], issuer=ISSUER, audience=AUDIENCE), garbage)


def test_tampered_token_is_rejected(keys: tuple[bytes, bytes]) -> None:
    private, public = keys
    header, payload, signature = _token(private).split(".")
    forged = _token(private, roles=["admin"]).split(".")[1]
    _refused(
        TokenVerifier(public, issuer=ISSUER, audience=AUDIENCE),
        f"{header}.{forged}.{signature}",
    )
    assert payload != forged


def test_may_act_on_exact_scopes() -> None:
    principal = Principal("u1", frozenset({"dispatcher"}), frozenset({"township:T01", "dept:CGJ"}))
    assert principal.may_act_on("township", "T01")
    assert principal.may_act_on("dept", "CGJ")
    assert not principal.may_act_on("township", "T02")
    assert not principal.may_act_on("dept", "T01")
    assert not principal.may_act_on("unit", "T01-TEAM")
    assert not principal.may_act_on("township", "T0")  # no prefix matching


def test_may_act_on_wildcards_cover_only_their_kind() -> None:
    principal = Principal("sup", frozenset({"county_supervisor"}), frozenset({"township:*"}))
    assert principal.may_act_on("township", "T01")
    assert principal.may_act_on("township", "T15")
    assert not principal.may_act_on("dept", "CGJ")
    assert not principal.may_act_on("grid", "T01V01G01")


def test_no_scopes_means_no_action() -> None:
    principal = Principal("nobody", frozenset(), frozenset())
    assert not principal.may_act_on("township", "T01")
    assert not principal.may_act_on("township", "*")
