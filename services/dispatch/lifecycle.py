"""The case lifecycle: which action may follow which, and who may take it.

    triage ──assign──▶ assigned ──accept──▶ accepted ──start──▶ in_progress ──resolve──▶ resolved
       ▲                  │                    │                   │ progress            │
       └────reject────────┘                    └──────resolve──────┘                     │
     (退单; the second rejection goes to county arbitration, whose assignment is final)  │
                                          closed ◀──close── resolved ──reopen──▶ in_progress

A resolved case closes only after its 回访 (:func:`closes_at`): once the citizen's follow-up is
recorded, or once the follow-up window has passed since the resolution — never before the
citizen could be heard, so that closing cannot be used to escape a rating. While accepted or
in progress, the unit records its contact with the citizen (联系群众, ``contact``), which is
what 响应率 counts.

Plain data and functions: the case service (cases.py) asks :func:`check` and :func:`closes_at`
and applies the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from contracts.cases import CaseStatus


class Action(StrEnum):
    ASSIGN = "assign"
    ACCEPT = "accept"
    REJECT = "reject"
    START = "start"
    PROGRESS = "progress"
    RESOLVE = "resolve"
    CLOSE = "close"
    REOPEN = "reopen"
    CONTACT = "contact"


OPEN_STATUSES: frozenset[CaseStatus] = frozenset(CaseStatus) - {CaseStatus.CLOSED}

# Who acts: the township's command centre, the assigned unit, or the county.
DISPATCHER, UNIT, COUNTY = "dispatcher", "unit", "county"
# A citizen acts only through a dissatisfied rating (回访不满意), which reopens the case.
CITIZEN = "citizen"

_TRANSITIONS: dict[tuple[CaseStatus, Action], tuple[CaseStatus, frozenset[str]]] = {
    (CaseStatus.TRIAGE, Action.ASSIGN): (CaseStatus.ASSIGNED, frozenset({DISPATCHER, COUNTY})),
    (CaseStatus.ARBITRATION, Action.ASSIGN): (CaseStatus.ASSIGNED, frozenset({COUNTY})),
    (CaseStatus.ASSIGNED, Action.ACCEPT): (CaseStatus.ACCEPTED, frozenset({UNIT})),
    (CaseStatus.ASSIGNED, Action.REJECT): (CaseStatus.TRIAGE, frozenset({UNIT})),
    (CaseStatus.ACCEPTED, Action.START): (CaseStatus.IN_PROGRESS, frozenset({UNIT})),
    (CaseStatus.ACCEPTED, Action.RESOLVE): (CaseStatus.RESOLVED, frozenset({UNIT})),
    (CaseStatus.IN_PROGRESS, Action.PROGRESS): (CaseStatus.IN_PROGRESS, frozenset({UNIT})),
    # 联系群众: recorded by the unit once it holds the case; the status stays.
    (CaseStatus.ACCEPTED, Action.CONTACT): (CaseStatus.ACCEPTED, frozenset({UNIT})),
    (CaseStatus.IN_PROGRESS, Action.CONTACT): (CaseStatus.IN_PROGRESS, frozenset({UNIT})),
    (CaseStatus.IN_PROGRESS, Action.RESOLVE): (CaseStatus.RESOLVED, frozenset({UNIT})),
    (CaseStatus.RESOLVED, Action.CLOSE): (CaseStatus.CLOSED, frozenset({DISPATCHER, COUNTY})),
    (CaseStatus.RESOLVED, Action.REOPEN): (
        CaseStatus.IN_PROGRESS,
        frozenset({DISPATCHER, COUNTY, CITIZEN}),
    ),
    (CaseStatus.CLOSED, Action.REOPEN): (
        CaseStatus.IN_PROGRESS,
        frozenset({DISPATCHER, COUNTY, CITIZEN}),
    ),
}

# A unit may send a case back once; the second rejection is a dispute for the county.
REJECTIONS_BEFORE_ARBITRATION = 2


@dataclass(frozen=True)
class Allowed:
    to: CaseStatus


@dataclass(frozen=True)
class Refused:
    reason: str
    allowed: tuple[Action, ...]


def acting_as(actors: frozenset[str], action: Action, status: CaseStatus) -> str:
    """The role someone holding several takes for this step (for the record)."""
    _, permitted = _TRANSITIONS[(status, action)]
    return sorted(actors & permitted)[0]


def allowed_actions(status: CaseStatus) -> tuple[Action, ...]:
    return tuple(action for (s, action) in _TRANSITIONS if s is status)


def check(
    status: CaseStatus, action: Action, actors: frozenset[str], rejections: int = 0
) -> Allowed | Refused:
    """May someone acting as any of ``actors`` take ``action`` on a case in ``status``?
    ``rejections`` counts earlier rejections, which decide where a rejected case goes."""
    rule = _TRANSITIONS.get((status, action))
    if rule is None:
        return Refused(
            f"a case that is {status.value} cannot be {action.value}ed",
            allowed_actions(status),
        )
    to, permitted = rule
    if not actors & permitted:
        return Refused(
            f"{action.value} on a {status.value} case is for: {', '.join(sorted(permitted))}",
            allowed_actions(status),
        )
    if action is Action.REJECT and rejections + 1 >= REJECTIONS_BEFORE_ARBITRATION:
        return Allowed(CaseStatus.ARBITRATION)
    return Allowed(to)


@dataclass(frozen=True)
class FollowUp:
    """What decides when a resolved case may close."""

    resolved_at: datetime | None  # its latest resolution; None for one resolved before it was kept
    followed_up_at: datetime | None  # a 回访 of that resolution recorded (a rating, any channel)


def closes_at(follow_up: FollowUp, now: datetime, window: timedelta) -> datetime | None:
    """When a resolved case may be closed, if not yet at ``now``; None if it may close now.

    A recorded 回访 of the latest resolution allows it at once. Without one, the citizen keeps
    ``window`` from the resolution to rate (a dissatisfied rating reopens the case): closing
    earlier would take that away. A citizen who cannot be reached does not hold the case open
    for ever: the window passes. A case resolved before the resolution's time was kept has no
    window to wait for."""
    if follow_up.followed_up_at is not None or follow_up.resolved_at is None:
        return None
    opens = follow_up.resolved_at + window
    return opens if now < opens else None
