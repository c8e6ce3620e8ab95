"""A received tip, as its citizen follows it: the case it follows, where it stands in their
words, their rating of its handling, what they add to it later. Channels create tips
(channels.py); this is everything that happens to one afterwards.

A tip follows its case through dispatch's case events (consumers.py). A case may carry several
tips: its own, and near-duplicates that dispatch merged into it (``whistle.case.merged``).
Every step of the case moves each tip linked to it; a tip split back out
(``whistle.case.split``) follows its new case from then on.

A tip is followed with its tracking number and access code. The code is six digits, so it must
not be guessable: wrong codes count against the guessing address and against the tracking
number, before the code is looked at (access_codes.py says how, and why the number's count
only slows). An unknown number and a wrong code get the same answer, so a number alone reveals
nothing. A code stored with an older hash is stored again with the keyed one once it is right.

A rating (回访) commits with its timeline mark and its ``whistle.tip.rated`` event, whichever
channel took it (the citizen page, a WeChat reply, a 12345 follow-up call); the rules of when a
citizen may rate are feedback.py's. A follow-up call that reached nobody leaves as
``whistle.tip.follow_up_unreachable``. A supplement (a WeChat photo or location sent
after the text) leaves as ``whistle.tip.supplemented`` in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast
from uuid import UUID

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import Channel, Rating, TipFollowUpUnreachable, TipRated, TipSupplemented
from contracts.topics import TIPS
from services.intake import SOURCE, access_codes, database
from services.intake.contact import ContactVault, redact_for_events
from services.intake.errors import (
    AccessCodeGuessesExceeded,
    IdempotencyKeyReused,
    RatingRefused,
    TipNotFound,
)
from services.intake.feedback import UNREACHABLE, FollowUpAnswer, RatingState, Refusal, refusal
from services.intake.models import FollowUpAttempt, Tip, TipFeedback, TipTimelineEntry
from services.intake.ratelimit import HOUR, Limit, enforce, give_back
from services.intake.tracking import CodeCheck
from services.runtime.outbox import stage
from services.runtime.service import Runtime

# Hashed in place of a tip that does not exist.
UNKNOWN_TIP = UUID(int=0)

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
    "follow_up_unreachable": "回访电话未能联系到您",
    "contacted": "承办单位已与您联系",
    "declined": "经县级准入审核，不属于乡镇事项清单，不予立案办理；如有疑问请拨打12345",
}
JOINED_CASE_NOTE = "您反映的问题已与其他群众反映的同一问题合并办理"
RATED_TEXT = "已办结，您已评价"


async def link_to_case(session: AsyncSession, tip_id: UUID, case_id: UUID) -> None:
    """The tip's own case was opened. One statement, not a read and a write: every tip's case
    opens, and intake's consumer read each tip back several times (docs/benchmarks.md)."""
    await session.execute(
        update(Tip).where(Tip.id == tip_id).values(case_id=case_id, joined_case=False)  # type: ignore[arg-type]
    )


async def join_case(session: AsyncSession, tip_id: UUID, case_id: UUID, at: datetime) -> None:
    """The tip joined an open case: it follows that case, and shows where the case stands."""
    tip = await session.get(Tip, tip_id, with_for_update=True)
    if tip is None:
        return
    tip.case_id = case_id
    tip.joined_case = True
    sibling = await session.scalar(
        select(Tip).where(Tip.case_id == case_id, Tip.id != tip.id).limit(1)  # type: ignore[arg-type]
    )
    status = sibling.status if sibling is not None else tip.status
    if sibling is not None:
        tip.resolution_round = max(tip.resolution_round, sibling.resolution_round)
    _advance(session, tip, status, at, mark="merged")


async def split_off(session: AsyncSession, tip_id: UUID, case_id: UUID, at: datetime) -> None:
    """The tip was split back out into a case of its own, triaged anew."""
    tip = await session.get(Tip, tip_id, with_for_update=True)
    if tip is None:
        return
    # The new case's events travel on its own partition and may have been seen first.
    new_case_seen = tip.case_id == case_id and not tip.joined_case
    tip.case_id = case_id
    tip.joined_case = False
    if new_case_seen:
        session.add(TipTimelineEntry(tip_id=tip.id, status="split", at=at))
    else:
        _advance(session, tip, "received", at, mark="split")


async def follow_case(
    session: AsyncSession,
    case_id: UUID,
    tip_id: UUID,
    status: str,
    at: datetime,
    mark: str | None = None,
) -> None:
    """Move the tips following the case to ``status``, with a ``mark`` on their timelines if
    given. ``tip_id`` is the case's own tip, which may not be linked to it yet."""
    for tip in await _tips_of(session, case_id, tip_id):
        _advance(session, tip, status, at, mark)


async def mark_case(
    session: AsyncSession, case_id: UUID, tip_id: UUID, mark: str, at: datetime
) -> None:
    """A mark on the timelines of the tips following the case, their status unchanged."""
    for tip in await _tips_of(session, case_id, tip_id):
        session.add(TipTimelineEntry(tip_id=tip.id, status=mark, at=at))


async def _tips_of(session: AsyncSession, case_id: UUID, tip_id: UUID) -> list[Tip]:
    """The tips following a case: those linked to it, and the event's own tip while it is not
    linked to any case yet. Tips from another intake deployment are not ours to update."""
    tips = list(
        await session.scalars(
            select(Tip).where(Tip.case_id == case_id).order_by(Tip.id).with_for_update()  # type: ignore[arg-type]
        )
    )
    if all(tip.id != tip_id for tip in tips):
        own = await session.get(Tip, tip_id, with_for_update=True)
        if own is not None and own.case_id is None:
            tips.append(own)
    return tips


def _advance(
    session: AsyncSession, tip: Tip, status: str, at: datetime, mark: str | None = None
) -> None:
    if mark is not None:
        session.add(TipTimelineEntry(tip_id=tip.id, status=mark, at=at))
    if tip.status != status:
        if status == "resolved":
            tip.resolution_round += 1  # a new resolution the citizen may rate
        tip.status = status
        session.add(TipTimelineEntry(tip_id=tip.id, status=status, at=at))


async def verified(runtime: Runtime, address: str, tracking_no: str, code: str) -> Tip:
    """The tip the citizen proved with its access code; TipNotFound alike for a wrong code and
    an unknown number, AccessCodeGuessesExceeded before the code is looked at when the address
    or the number has no wrong code left. Lookups count against the address they come from."""
    settings = runtime.settings
    lookups = Limit("lookups/address", settings.rate_limit_lookups_per_address_per_hour, HOUR)
    await enforce(runtime, [(lookups, address)])
    turns = access_codes.allowances(settings, address, tracking_no)
    await enforce(runtime, turns, AccessCodeGuessesExceeded)
    vault: ContactVault = runtime.state["vault"]
    async with database.transaction(runtime) as session:
        tip = await session.scalar(select(Tip).where(Tip.tracking_no == tracking_no))
        if tip is None:
            # As much work as for a wrong code: the time taken says nothing either.
            vault.hash_access_code(UNKNOWN_TIP, code)
            check = CodeCheck.WRONG
        else:
            check = vault.check_access_code(tip.id, code, tip.access_code_hash)
        if check is CodeCheck.RIGHT_REHASH:
            assert tip is not None
            tip.access_code_hash = vault.hash_access_code(tip.id, code)
        if check is not CodeCheck.WRONG:
            await give_back(session, turns)
    # A wrong code keeps the turns it took (committed before it was looked at).
    if tip is None or check is CodeCheck.WRONG:
        raise TipNotFound()
    return tip


@dataclass(frozen=True)
class Standing:
    """Where a tip stands, as its citizen is shown it."""

    tip: Tip
    # The citizen's rating of the latest resolution, if they gave one.
    rated: TipFeedback | None
    timeline: Sequence[TipTimelineEntry]

    @property
    def status_text(self) -> str:
        if self.tip.status == "resolved" and self.rated is not None:
            return RATED_TEXT
        return STATUS_TEXT.get(self.tip.status, self.tip.status)

    @property
    def may_rate(self) -> bool:
        return rating_refusal(self.tip, self.rated) is None


def rating_refusal(
    tip: Tip, rated: TipFeedback | None, *, by_telephone: bool = False
) -> Refusal | None:
    reachable = tip.contact_sealed is not None or not by_telephone
    return refusal(RatingState(tip.status, tip.resolution_round, rated is not None, reachable))


async def standing(runtime: Runtime, tip: Tip) -> Standing:
    async with database.reading(runtime) as session:
        rated = await session.get(TipFeedback, (tip.id, tip.resolution_round))
        timeline = (
            await session.scalars(
                select(TipTimelineEntry)
                .where(TipTimelineEntry.tip_id == tip.id)
                .order_by(TipTimelineEntry.at, TipTimelineEntry.id)
            )
        ).all()
    return Standing(tip, rated, timeline)


@dataclass(frozen=True)
class Taken:
    """How a rating was taken: its channel, who recorded it, and the channel's reference of
    it (a call id, a WeChat MsgId) that a retry is recognised by."""

    channel: Channel = "web"
    recorded_by: str | None = None
    external_ref: str | None = None


async def rated_tip(session: AsyncSession, tip_id: UUID) -> tuple[Tip, TipFeedback | None]:
    """The tip, locked (a case event or a concurrent rating waits until this one is decided),
    and its rating of the latest resolution if it has one."""
    tip = await session.get(Tip, tip_id, with_for_update=True, populate_existing=True)
    assert tip is not None
    return tip, await session.get(TipFeedback, (tip.id, tip.resolution_round))


def record_rating(
    session: AsyncSession,
    tip: Tip,
    rating: Rating,
    comment: str | None,
    now: datetime,
    taken: Taken,
) -> TipFeedback:
    """Stage the rating of the locked tip's latest resolution, its timeline mark and its
    event in the caller's transaction; the caller has found that the citizen may rate."""
    assert tip.case_id is not None  # resolved: its case is known
    feedback = TipFeedback(
        tip_id=tip.id,
        resolution_round=tip.resolution_round,
        case_id=tip.case_id,
        rating=rating,
        comment=comment,
        rated_at=now,
        channel=taken.channel,
        recorded_by=taken.recorded_by,
        external_ref=taken.external_ref,
    )
    session.add(feedback)
    session.add(TipTimelineEntry(tip_id=tip.id, status="rated", at=now))
    payload = TipRated(
        tip_id=tip.id,
        case_id=tip.case_id,
        rating=rating,
        comment=redact_for_events(comment) if comment else None,
        channel=taken.channel,
        rated_at=now,
        recorded_by=taken.recorded_by,
    )
    stage(session, TIPS, new_event(SOURCE, str(tip.id), payload, now, tip.county))
    return feedback


async def rate(runtime: Runtime, tip_id: UUID, rating: Rating, comment: str | None) -> TipFeedback:
    """Record the citizen's rating of the tip's latest resolution from the citizen page;
    RatingRefused when they may not rate now."""
    now = runtime.clock()
    try:
        async with database.transaction(runtime) as session:
            tip, rated = await rated_tip(session, tip_id)
            why = rating_refusal(tip, rated)
            if why is not None:
                raise RatingRefused(why)
            feedback = record_rating(session, tip, rating, comment, now, Taken())
    except IntegrityError as exc:
        # A concurrent rating of the same resolution committed first.
        raise RatingRefused("already_rated") from exc
    return feedback


@dataclass(frozen=True)
class FollowUpCall:
    """What a 12345 operator recorded of a follow-up call, and whether it was recorded before
    (the same call id sent again)."""

    tracking_no: str
    answer: FollowUpAnswer
    comment: str | None
    resolution_round: int
    recorded_at: datetime
    duplicate: bool = False


async def follow_up_call(
    runtime: Runtime,
    tracking_no: str,
    answer: FollowUpAnswer,
    comment: str | None,
    *,
    call_id: str,
    operator: str,
) -> FollowUpCall:
    """A 12345 operator's 回访 call about the tip: the citizen's rating, taken like any other,
    or that they could not be reached (kept, and said as its own event). The same call id
    again gets what it recorded; with another answer or tip it is not a retry."""
    now = runtime.clock()
    try:
        async with database.transaction(runtime) as session:
            found = await session.scalar(select(Tip.id).where(Tip.tracking_no == tracking_no))
            if found is None:
                raise TipNotFound()
            tip, rated = await rated_tip(session, found)
            before = await _call_recorded(session, tip, call_id, answer, comment)
            if before is not None:
                return before
            why = rating_refusal(tip, rated, by_telephone=True)
            if why is not None:
                raise RatingRefused(why)
            assert tip.case_id is not None  # resolved: its case is known
            if answer == UNREACHABLE:
                session.add(
                    FollowUpAttempt(
                        call_id=call_id,
                        tip_id=tip.id,
                        resolution_round=tip.resolution_round,
                        recorded_by=operator,
                        attempted_at=now,
                    )
                )
                session.add(TipTimelineEntry(tip_id=tip.id, status="follow_up_unreachable", at=now))
                missed = TipFollowUpUnreachable(
                    tip_id=tip.id,
                    case_id=tip.case_id,
                    channel="hotline",
                    call_id=call_id,
                    recorded_by=operator,
                    attempted_at=now,
                )
                stage(session, TIPS, new_event(SOURCE, str(tip.id), missed, now, tip.county))
            else:
                taken = Taken("hotline", operator, call_id)
                record_rating(session, tip, cast(Rating, answer), comment, now, taken)
    except IntegrityError as exc:
        # A concurrent rating of the same resolution, or the same call id, committed first.
        raise RatingRefused("already_rated") from exc
    return FollowUpCall(tracking_no, answer, comment, tip.resolution_round, now)


async def _call_recorded(
    session: AsyncSession, tip: Tip, call_id: str, answer: FollowUpAnswer, comment: str | None
) -> FollowUpCall | None:
    """What the call id recorded before, if anything; IdempotencyKeyReused if that was not
    this answer about this tip."""
    feedback = await session.scalar(
        select(TipFeedback).where(
            TipFeedback.channel == "hotline",
            TipFeedback.external_ref == call_id,
        )
    )
    if feedback is not None:
        same = (feedback.tip_id, feedback.rating, feedback.comment) == (tip.id, answer, comment)
        at, round_ = feedback.rated_at, feedback.resolution_round
    else:
        attempt = await session.get(FollowUpAttempt, call_id)
        if attempt is None:
            return None
        same = (attempt.tip_id, UNREACHABLE) == (tip.id, answer)
        at, round_ = attempt.attempted_at, attempt.resolution_round
    if not same:
        raise IdempotencyKeyReused(call_id)
    return FollowUpCall(tip.tracking_no, answer, comment, round_, at, duplicate=True)


def supplement(session: AsyncSession, added: TipSupplemented) -> None:
    """Stage what the citizen added to their tip; the caller commits."""
    stage(session, TIPS, new_event(SOURCE, str(added.tip_id), added, added.supplemented_at))
