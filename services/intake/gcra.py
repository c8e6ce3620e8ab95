"""The rate-limit rule: GCRA (the generic cell rate algorithm), as a plain function.

A limit of ``limit`` requests per ``period`` lets a client send its whole allowance at once and
then gives one request back every ``period / limit`` (the emission interval). The only state
is one instant per key, the theoretical arrival time (TAT): when the client's allowance would
be whole again. A request at ``now`` is allowed while the TAT is no further ahead of ``now``
than ``period`` less one emission interval; an allowed request moves the TAT one emission
interval on (from ``now`` if it lies in the past); a refused one leaves it where it is, and
is told the real time until the next request will be allowed.

Nothing here is aligned to the clock: there is no window boundary across which a client could
send twice its limit. ``services/intake/ratelimit.py`` applies the same rule in one SQL
statement, so that every intake replica shares it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

ZERO = timedelta(0)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    # Zero when allowed; otherwise how long until one more request would be allowed.
    retry_after: timedelta
    # The theoretical arrival time to keep for the key (unchanged when refused; None if the
    # key had none and the request was refused, which a positive limit never does).
    tat: datetime | None

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` in whole seconds, rounded up: waiting that long is always enough."""
        if self.allowed:
            return 0
        return max(1, math.ceil(self.retry_after / timedelta(seconds=1)))


def emission_interval(limit: int, period: timedelta) -> timedelta:
    """How often one request of the allowance comes back."""
    if limit < 1 or period <= ZERO:
        raise ValueError(f"a rate limit needs a positive limit and period: {limit} per {period}")
    return period / limit


def tolerance(limit: int, period: timedelta) -> timedelta:
    """How far ahead of now the TAT may be for a request still to be allowed."""
    return period - emission_interval(limit, period)


def gcra(now: datetime, limit: int, period: timedelta, tat: datetime | None) -> Verdict:
    """Whether a request at ``now`` is allowed under ``limit`` per ``period``, given the key's
    stored theoretical arrival time ``tat`` (None: the key has none yet)."""
    interval = emission_interval(limit, period)
    ahead = ZERO if tat is None else tat - now
    allowed_from = ahead - tolerance(limit, period)
    if allowed_from > ZERO:
        return Verdict(False, allowed_from, tat)
    start = now if tat is None or tat < now else tat
    return Verdict(True, ZERO, start + interval)
