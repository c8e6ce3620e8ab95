"""JWT verification with role and scope checks (Ed25519 / EdDSA, PyJWT).

Services only ever hold the public key. Development keys are generated under ``WHISTLE_HOME``
by ``whistle up`` and ``whistle token``; production supplies the public key of its issuer.
A scope names what a principal may act on: ``county:<code>`` (the tenant; ``county:*`` for the
city's own roles), ``township:<code>``, ``dept:<code>``, ``unit:<id>``, ``grid:<id>``. A token
that names no county was issued for a single-county stack: it acts for the default county.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import Request

from contracts.tenancy import COUNTY_SCOPE
from services.runtime.problems import Problem

ROLES: tuple[str, ...] = (
    "grid_worker",
    "hotline_operator",
    "dispatcher",
    "unit_member",
    "county_department",
    "county_supervisor",
    # 县政府: approves or rejects the admission (准入) of out-of-list matters the county
    # supervisor proposes, so that no single office moves duties onto a township.
    "county_government",
    # 法制审核人员: reviews the major enforcement decisions (重大执法决定) before they take
    # effect, approving or returning them with an opinion.
    "legal_reviewer",
    # 乡镇领导: gives the township's assessment opinion (考核意见, 盖章) of seconded officers.
    "township_leader",
    "auditor",
    "admin",
)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    scopes: frozenset[str]

    def may_act_on(self, kind: str, code: str) -> bool:
        return f"{kind}:{code}" in self.scopes or f"{kind}:*" in self.scopes

    def counties(self) -> frozenset[str] | None:
        """The counties the principal reads and acts for (its ``county:<code>`` scopes, the
        default county's added by :func:`with_county` when it names none); None for all of
        them (``county:*``, the city's roles)."""
        prefix = f"{COUNTY_SCOPE}:"
        codes = frozenset(s.removeprefix(prefix) for s in self.scopes if s.startswith(prefix))
        return None if "*" in codes else codes


def ensure_dev_keys(private_path: Path, public_path: Path) -> None:
    """Create an Ed25519 key pair for development if there is none yet.

    An existing public key is never overwritten: services and auditors trust it. Without its
    private key this refuses; a private key whose public key is missing gets it derived.
    Replicas starting together may race here: the private key is put in place atomically, the
    first one wins, and every one derives the public key from the winner.
    """
    if not private_path.exists():
        # The private key is always in place before its public key: a public key alone is
        # someone else's.
        if public_path.exists() and not private_path.exists():
            raise RuntimeError(
                f"{public_path} exists without its private key {private_path}; refusing to "
                "replace a public key others trust (remove it to start a new development key pair)"
            )
        private_path.parent.mkdir(parents=True, exist_ok=True)
        candidate = private_path.with_name(f".{private_path.name}.{os.getpid()}")
        candidate.write_bytes(
            Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        candidate.chmod(0o600)
        try:
            os.link(candidate, private_path)  # fails if another process got there first
        except FileExistsError:
            pass
        finally:
            candidate.unlink()
    if not public_path.exists():
        key = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise RuntimeError(f"{private_path} is not an Ed25519 private key")
        _write_public(key, public_path)


def _write_public(key: Ed25519PrivateKey, public_path: Path) -> None:
    """Written whole or not at all (a reader never sees half a key); racing writers write the
    same bytes, derived from the same private key."""
    public_path.parent.mkdir(parents=True, exist_ok=True)
    partial = public_path.with_name(f".{public_path.name}.{os.getpid()}")
    partial.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    os.replace(partial, public_path)


def issue_token(
    private_key_pem: bytes,
    *,
    subject: str,
    roles: list[str],
    scopes: list[str],
    issuer: str,
    audience: str | list[str],
    now: datetime,
    lifetime: timedelta = timedelta(hours=12),
) -> str:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s): {', '.join(sorted(unknown))}")
    claims = {
        "sub": subject,
        "roles": roles,
        "scopes": scopes,
        "iss": issuer,
        "aud": audience,
        "iat": int(now.timestamp()),
        "exp": int((now + lifetime).timestamp()),
    }
    return jwt.encode(claims, private_key_pem, algorithm="EdDSA")


DEFAULT_MAX_LIFETIME = timedelta(hours=24)


class TokenVerifier:
    def __init__(
        self,
        public_key_pem: bytes,
        *,
        issuer: str,
        audience: str,
        max_lifetime: timedelta = DEFAULT_MAX_LIFETIME,
        default_county: str | None = None,
    ) -> None:
        self._key = public_key_pem
        self._default_county = default_county
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime = max_lifetime

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=["EdDSA"],
                issuer=self._issuer,
                audience=self._audience,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise _unauthorized(f"The token is not valid: {exc}.") from exc
        # A stolen long-lived token is good for as long as it says: refuse lifetimes beyond the
        # maximum, measured from iat, or from now when the token does not say when it was issued.
        issued = claims.get("iat")
        start = issued if isinstance(issued, int | float) else time.time()
        if float(claims["exp"]) - float(start) > self._max_lifetime.total_seconds():
            raise _unauthorized(
                f"The token is not valid: its lifetime exceeds {self._max_lifetime}."
            )
        return Principal(
            subject=str(claims["sub"]),
            roles=frozenset(claims.get("roles") or ()),
            scopes=with_county(frozenset(claims.get("scopes") or ()), self._default_county),
        )


def with_county(scopes: frozenset[str], default_county: str | None) -> frozenset[str]:
    """A token's scopes, with ``county:<default>`` when it names no county: tokens issued
    before tenancy (and a single county's) keep acting for the county they were issued in."""
    if default_county is None or any(s.startswith(f"{COUNTY_SCOPE}:") for s in scopes):
        return scopes
    return scopes | {f"{COUNTY_SCOPE}:{default_county}"}


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def require_roles(*roles: str) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, if it holds one of ``roles``. A coroutine
    though it never awaits: FastAPI runs a plain function dependency in a worker thread, a hop
    per request that costs more than the check (docs/benchmarks.md)."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("A bearer token is required.")
        verifier: TokenVerifier = request.app.state.runtime.verifier
        principal = verifier.verify(token)
        if not principal.roles & allowed:
            raise Problem(403, "Forbidden", f"This needs one of the roles: {', '.join(roles)}.")
        return principal

    return dependency
