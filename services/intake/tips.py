"""A received tip as its citizen follows it: its status in their words, and the access code
that proves the citizen.

A tip is followed with its tracking number and access code. The code is six digits, so it must
not be guessable: wrong codes count against the tracking number, and a number that has seen
too many in the hour answers nobody until the hour is over. An unknown number and a wrong code
get the same answer, so a number alone reveals nothing.
"""

from __future__ import annotations

from sqlalchemy import select

from services.intake import database
from services.intake.errors import RateLimited, TipNotFound
from services.intake.models import Tip
from services.intake.ratelimit import HOUR, Limit, enforce, exceeded, hit
from services.intake.tracking import access_code_matches
from services.runtime.service import Runtime

# The CloudEvents source of every event intake stages.
SOURCE = "whistle/intake"

STATUS_TEXT = {
    "received": "已受理",
    "triage": "待人工分拨",
    "assigned": "已派单，等待承办单位接单",
    "in_progress": "承办单位处理中",
    "resolved": "已办结，等待回访",
    "closed": "已结案",
    # Timeline marks, not statuses.
    "merged": "已与其他群众反映的同一问题合并办理",
    "split": "已从合并办理中分出，单独立案办理",
    "reopened": "已重新办理",
    "rated": "已评价",
    "declined": "经县级准入审核，不属于乡镇事项清单，不予立案办理；如有疑问请拨打12345",
}
JOINED_CASE_NOTE = "您反映的问题已与其他群众反映的同一问题合并办理"
RATED_TEXT = "已办结，您已评价"


async def verified(runtime: Runtime, address: str, tracking_no: str, code: str) -> Tip:
    """The tip the citizen proved with its access code; TipNotFound alike for a wrong code and
    an unknown number. Lookups count against the address they come from."""
    settings = runtime.settings
    lookups = Limit("lookups/address", settings.rate_limit_lookups_per_address_per_hour, HOUR)
    await enforce(runtime, [(lookups, address)])
    wrong = Limit(
        "wrong-codes/tracking-no", settings.rate_limit_wrong_codes_per_tracking_no_per_hour, HOUR
    )
    async with database.transaction(runtime) as session:
        locked = await exceeded(session, wrong, tracking_no, runtime.clock())
        if not locked.allowed:
            raise RateLimited(locked.retry_after_seconds)
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
        if tip is None or not access_code_matches(tip.id, code, tip.access_code_hash):
            await hit(session, wrong, tracking_no, runtime.clock())
            found = None
        else:
            found = tip
    # Raised once the wrong code is committed: raising inside would roll its count back.
    if found is None:
        raise TipNotFound()
    return found
