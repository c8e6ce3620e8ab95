"""What intake refuses, and why: the domain errors its service layer raises.

None of them knows HTTP. The problem+json edges answer each as ``edges.problem`` maps it;
Open311 says the same problem in the GeoReport error format; WeChat, which must answer every
message with a reply, asks the follower to send it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.intake.feedback import Refusal


class IntakeError(Exception):
    """A request intake refused."""


class RateLimited(IntakeError):
    """The request is over one of its rate limits; it may be sent again after the wait."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(f"rate limited for {retry_after_seconds} s")
        self.retry_after_seconds = retry_after_seconds


class AccessCodeGuessesExceeded(RateLimited):
    """Too many wrong access codes from the client's address, or for the tracking number: the
    code was not looked at (services/intake/access_codes.py)."""


class UnknownAttachment(IntakeError):
    """A tip names attachments that were never uploaded through ``POST /v1/attachments``."""

    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(f"unknown attachments: {', '.join(ids)}")
        self.ids = list(ids)


class IdempotencyKeyReused(IntakeError):
    """A retry's key names a submission accepted before with another body: not a retry."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was used for another submission")
        self.key = key


class NoTrackingNumber(IntakeError):
    """Every tracking number tried was taken: the day's number space is nearly full."""


class TipNotFound(IntakeError):
    """No tip has this tracking number, or the access code is wrong. One error for both, so
    that a tracking number alone reveals nothing."""


class UnknownTip(IntakeError):
    """No tip has this tracking number (for staff, who need no access code)."""


class AlreadyErased(IntakeError):
    """The tip's personal data was erased before (by retention or an earlier request)."""

    def __init__(self, erased_at: datetime) -> None:
        super().__init__(f"erased at {erased_at.isoformat()}")
        self.erased_at = erased_at


class RatingRefused(IntakeError):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal)
        self.refusal = refusal


class WeChatCallbackReplayed(IntakeError):
    """A signed WeChat callback whose timestamp and nonce were taken before, within the
    timestamp window: a replay of a request someone kept."""


class WeChatMessageOfAnother(IntakeError):
    """A MsgId taken before from another follower: the reply it got (a tip's tracking number
    and access code) is not this sender's to see."""
