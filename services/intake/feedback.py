"""回访: when may a citizen rate how their case was handled, and what the rating means.

A rating belongs to one *resolution round*: the n-th time the tip's case was resolved. The
citizen rates once per round, and only while the case stands resolved — before it is resolved
there is nothing to rate, and once closed the rating could no longer reopen it. A dissatisfied
rating asks dispatch to reopen the case; when the case is resolved again, a new round begins
and the citizen may rate again, which is what a citizen who was unhappy the first time expects.

Every channel takes the same rating under the same rules: the citizen page (web), a reply to
the WeChat account (wechat), and a 12345 operator's follow-up call (hotline), whose answer may
also be that the citizen could not be reached — not a rating, so 满意率 does not count it, and
the case's follow-up window runs on. A call needs a number to call: a tip left without one
cannot be followed up by telephone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from contracts.events import Rating

RATING_TEXT: dict[str, str] = {
    "satisfied": "满意",
    "basically_satisfied": "基本满意",
    "dissatisfied": "不满意",
}

# What a 12345 follow-up call may record: the citizen's rating, or that nobody answered.
FollowUpAnswer = Literal["satisfied", "basically_satisfied", "dissatisfied", "unreachable"]
UNREACHABLE = "unreachable"
ANSWER_TEXT: dict[str, str] = {**RATING_TEXT, UNREACHABLE: "无法联系"}

Refusal = Literal["not_resolved", "closed", "already_rated", "no_contact"]

REFUSAL_TEXT: dict[Refusal, str] = {
    "not_resolved": "案件尚未办结，办结后才能评价。",
    "closed": "案件已结案，不能再评价。",
    "already_rated": "您已评价过本次办理结果。",
    "no_contact": "该诉求未留联系电话，无法电话回访。",
}


@dataclass(frozen=True)
class RatingState:
    """What decides whether the citizen may rate now."""

    status: str
    resolution_round: int
    rated_this_round: bool
    # Only for a follow-up call: whether the tip left a number to call.
    reachable: bool = True


def refusal(state: RatingState) -> Refusal | None:
    """Why the citizen may not rate now, or None if they may."""
    if not state.reachable:
        return "no_contact"
    if state.status == "closed":
        return "closed"
    if state.status != "resolved" or state.resolution_round < 1:
        return "not_resolved"
    if state.rated_this_round:
        return "already_rated"
    return None


def reopens(rating: Rating) -> bool:
    """A dissatisfied citizen's case is handled again (dispatch reopens it)."""
    return rating == "dissatisfied"
