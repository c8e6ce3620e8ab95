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

Each allowance is a rate limit like the others (``services/intake/ratelimit.py``: a GCRA kept
in PostgreSQL, one atomic statement per turn, so a burst of N concurrent guesses cannot take
more turns than there are). A code is only looked at after a turn was taken from both, and
committed; a right code gives both turns back, a wrong one keeps them.
"""

from __future__ import annotations

import ipaddress

from services.intake.ratelimit import HOUR, Limit
from services.runtime.settings import Settings

Turn = tuple[Limit, str]


def allowances(settings: Settings, address: str, tracking_no: str) -> tuple[Turn, Turn]:
    """The address's allowance of wrong codes, then the number's: the order every guess takes
    them in (``ratelimit.enforce``, ``ratelimit.give_back``)."""
    per_address = settings.rate_limit_wrong_codes_per_address_per_hour
    per_number = settings.rate_limit_wrong_codes_per_tracking_no_per_hour
    return (
        (Limit("wrong_codes/address", per_address, HOUR), address_key(address)),
        (Limit("wrong_codes/tracking_no", per_number, HOUR), tracking_no),
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
