"""The tenant of a city's stack: the county, by its 6-digit administrative division code.

Every event carries its county in the CloudEvents extension attribute ``county``
(``contracts/envelope.py``); every consumer admits only a county its reference data knows
(``services/runtime/inbox.py``), and a staff token acts for the counties its ``county:<code>``
scopes name (``county:*`` for the city's own roles). An event without the attribute was
produced before tenancy, by a single-county stack: it is the default county's, as a token
without a ``county:`` scope is (docs/scale.md).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

COUNTY_PATTERN = r"^[0-9]{6}$"
"""A 6-digit administrative division code (行政区划代码), e.g. ``140999``."""

COUNTY_SCOPE = "county"
"""The scope kind of a token's counties: ``county:<code>``, or ``county:*`` for all."""


def is_county_code(value: str) -> bool:
    return re.fullmatch(COUNTY_PATTERN, value) is not None


@dataclass(frozen=True)
class Counties:
    """The counties a deployment serves, and the one that whatever names none belongs to."""

    default: str
    known: frozenset[str]

    def __post_init__(self) -> None:
        if self.default not in self.known:
            raise ValueError(f"the default county {self.default} is not one of {self.known}")

    @classmethod
    def single(cls, code: str) -> Counties:
        return cls(code, frozenset({code}))

    def of(self, county: str | None) -> str:
        """The county of an event (or a row) that names ``county``; the default if none."""
        return county or self.default

    def refusal(self, county: str | None) -> str | None:
        """Why an event naming ``county`` may not be taken here; None if it may (an event
        naming none is the default county's: produced before tenancy)."""
        if county is None or county in self.known:
            return None
        return f"county {county} is not one of the counties served here ({_listed(self.known)})"


def _listed(codes: Collection[str]) -> str:
    return ", ".join(sorted(codes))
