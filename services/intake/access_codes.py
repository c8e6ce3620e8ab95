"""Guessing access codes: wrong codes are counted per tracking number and per guessing
address, shared by every intake replica through PostgreSQL.

A six-digit code is guessable by whoever may try it often enough. Tracking numbers are not
secret (Open311 publishes them), so counting wrong codes only against the number would let
anyone lock citizens out of their own tips, and counting them only against the address would
let anyone with many addresses guess. Both are counted:

- **per address** (``WHISTLE_RATE_LIMIT_WRONG_CODES_PER_ADDRESS_PER_HOUR``, 20): an address
  over its allowance is refused (429) before its code is looked at, and its attempt counts
  against no number — one guesser cannot lock anybody out;
- **per tracking number** (``…_PER_TRACKING_NO_PER_HOUR``, 10): bounds what many addresses
  together may try on one number. It only slows: once spent, the number takes one more code
  every period / limit (6 minutes), so its owner waits minutes, not the rest of the hour, and
  a guesser gets about 240 codes a day at most, against a million.

Each allowance is a GCRA (the whole allowance at once, then one back every period / limit):
one row per key holds its theoretical arrival time (``access_code_guard``). A code is only
looked at after a turn was taken from both, in one ``INSERT … ON CONFLICT DO UPDATE … WHERE …
RETURNING`` each: the row lock makes concurrent guesses for one key wait for each other, and
the WHERE re-reads the row each waited for, so a burst of N concurrent guesses cannot take
more turns than there are. A right code gives both turns back; a wrong one keeps them.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake import database
from services.intake.errors import AccessCodeGuessesExceeded
from services.runtime.service import Runtime
from services.runtime.settings import Settings

HOUR = timedelta(hours=1)
ADDRESS, TRACKING_NO = "address", "tracking_no"


@dataclass(frozen=True)
class Allowance:
    """So many wrong codes per period for one key of a scope."""

    scope: str
    key: str
    limit: int
    period: timedelta

    @property
    def interval(self) -> timedelta:
        """How often one wrong code of the allowance comes back."""
        return self.period / self.limit

    @property
    def tolerance(self) -> timedelta:
        """How far ahead of now the key's arrival time may be for a code to be looked at."""
        return self.period - self.interval


def allowances(settings: Settings, address: str, tracking_no: str) -> tuple[Allowance, Allowance]:
    """The address's allowance, then the number's: the order every guess takes them in."""
    return (
        Allowance(
            ADDRESS,
            address_key(address),
            settings.rate_limit_wrong_codes_per_address_per_hour,
            HOUR,
        ),
        Allowance(
            TRACKING_NO, tracking_no, settings.rate_limit_wrong_codes_per_tracking_no_per_hour, HOUR
        ),
    )


def address_key(address: str) -> str:
    """An IPv4 address as it is; an IPv6 address by its /64, which one subscriber holds whole."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


_TAKE = text(
    """
    INSERT INTO access_code_guard AS g (scope, key, tat)
    VALUES (:scope, :key, CAST(:now AS timestamptz) + CAST(:interval AS interval))
    ON CONFLICT (scope, key) DO UPDATE
        SET tat = GREATEST(g.tat, CAST(:now AS timestamptz)) + CAST(:interval AS interval)
        WHERE g.tat <= CAST(:now AS timestamptz) + CAST(:tolerance AS interval)
    RETURNING tat
    """
)

_GIVE_BACK = text(
    """
    UPDATE access_code_guard SET tat = tat - CAST(:interval AS interval)
    WHERE scope = :scope AND key = :key
    """
)

_TAT = text("SELECT tat FROM access_code_guard WHERE scope = :scope AND key = :key")


async def take(runtime: Runtime, turns: tuple[Allowance, ...]) -> None:
    """Take a turn from each allowance, in its own transaction, committed before the code is
    looked at; AccessCodeGuessesExceeded, with the wait, if one has none left, and then none
    is taken."""
    now = runtime.clock()
    async with database.transaction(runtime) as session:
        for allowance in turns:
            wait = await _take(session, allowance, now)
            if wait is not None:
                # Raised inside: what the allowances before it took is rolled back.
                raise AccessCodeGuessesExceeded(wait)


async def _take(session: AsyncSession, allowance: Allowance, now: datetime) -> int | None:
    """None if a turn was taken; otherwise the seconds until one comes back."""
    values = {
        "scope": allowance.scope,
        "key": allowance.key,
        "now": now,
        "interval": allowance.interval,
        "tolerance": allowance.tolerance,
    }
    if await session.scalar(_TAKE, values) is not None:
        return None
    # Refused: the row is as it was, and locked until the transaction ends.
    tat: datetime = await session.scalar(_TAT, values)
    wait = tat - allowance.tolerance - now
    return max(1, math.ceil(wait / timedelta(seconds=1)))


async def give_back(session: AsyncSession, turns: tuple[Allowance, ...]) -> None:
    """A right code: the turns it took are returned (in the caller's transaction)."""
    for allowance in turns:
        await session.execute(
            _GIVE_BACK,
            {"scope": allowance.scope, "key": allowance.key, "interval": allowance.interval},
        )


async def purge(session: AsyncSession, before: datetime) -> None:
    """Rows whose allowance was whole again before ``before`` say nothing: drop them."""
    await session.execute(
        text("DELETE FROM access_code_guard WHERE tat < :before"), {"before": before}
    )
