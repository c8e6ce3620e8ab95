"""The whistle protocol (吹哨报到): a township summons county departments; each must report in.

On ``WhistleBlown`` every summoned department gets two clocks, frozen from the deadline policy
for the whistle's urgency (``deploy/config/policies.yaml``):

- ``whistle_receipt`` (报到): the policy's ``whistle_receipt`` from the whistle (2 hours for an
  emergency, 1 working day otherwise; placeholders);
- ``whistle_reply``: due with the case's running resolution clock — "reply within the case's
  resolution deadline". A case without one, or whose deadline comes no later than the receipt
  deadline (the township whistled late), gives the department the policy's resolution time
  from the whistle instead: a department is accountable from when it was summoned.

They are ``deadline`` rows like a case's clocks and climb the same ladder (warning, overdue,
chase 催办, supervise 督办 + leadership), fired by the same scheduler; the department's notice
``WhistleNotified``, and copies of its chases and supervisions, go on its own topic.

A department answers through the HTTP API (``whistle_api.py``) or by producing
``WhistleReceiptSubmitted`` / ``WhistleReplySubmitted`` onto ``escalation.whistles.v1``
(``consumers.py``); both paths record through
:func:`record_receipt` / :func:`record_reply`, which stop the clock (``DeadlineStopped``) and
record ``WhistleReported`` / ``WhistleReplied``. Both count at escalation's own time of
recording, not a time the department's system puts on its message: the liability timeline
must not rest on the clock of the party it judges.

The whistle's clocks end with the case, not with its resolution:

- **Closed** (``whistle.case.closed``): every running clock of the case's whistles lapses — its
  pending ladder step is cancelled and ``DeadlineStopped`` records it with ``lapsed`` and
  ``stopped_by`` the closing, at the closing's own time. ``on_time`` is false (a department that
  never answered did not meet its clock, however early the case closed) and ``late_by_seconds``
  says how long past due the case closed. Chasing (催办) or supervising (督办, which pages county
  leadership) a department about a case the county has closed would be for nothing.
- **Resolved** alone stops nothing here: the reply is the department's own record of what it did
  (liability follows it), and a dissatisfied rating can still reopen the case.
- **Reopened**: lapsed whistle clocks stay lapsed; whistling again is the township's call.
- **Extended** (延期): an approved extension of the case's resolution clock moves the running
  reply clocks due with it (:func:`follow_extension`).

A department may still report in or reply after the closing; it is recorded, but no clock runs.

A second receipt or reply for the same whistle and department is refused (409 over HTTP,
ignored on Kafka). A reply before the receipt is refused too: the receipt number (回执) is the
department's registration of the case, and a reply carries none, so counting it as a receipt
would invent one. The department reports in, then replies; both may come in the same minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

from prometheus_client import Histogram
from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import CloudEvent
from contracts.events import (
    DeadlineStopped,
    ExtensionDecided,
    WhistleBlown,
    WhistleNotified,
    WhistleReplied,
    WhistleReported,
)
from contracts.tenancy import Counties
from contracts.topics import DEADLINES, WHISTLES
from reference.county import Urgency
from services.escalation.calendar import BusinessCalendar
from services.escalation.clocks import (
    WHISTLE_CLOCKS,
    insert_clocks,
    lapse_running,
    move_clock,
    stop_clock,
)
from services.escalation.counties import case_event, department_topic_for
from services.escalation.deadlines import ComputedDeadline, deadline_for
from services.escalation.extensions import moved_warning
from services.escalation.models import (
    CaseDeadline,
    WhistleEvidence,
    WhistleSummons,
)
from services.escalation.policies import DeadlinePolicy
from services.runtime.db import bound_insert
from services.runtime.metrics import after_commit
from services.runtime.outbox import stage
from services.runtime.uploads import StoredFile, not_stored

Via = Literal["http", "kafka"]
WhistleStatus = Literal[
    "awaiting_receipt", "receipt_overdue", "awaiting_reply", "reply_overdue", "replied"
]

# 报到 latency: from the summons to the department's receipt, observed once the receipt is
# committed (a transaction rolled back and retried counts once). Per department it is the
# ledger's KPI whistle_report_latency_avg_seconds.
RECEIPT_LATENCY = Histogram(
    "whistle_escalation_whistle_receipt_latency_seconds",
    "Seconds from a whistle's summons to the summoned department's receipt (报到), by the "
    "whistle's urgency",
    ["urgency"],
    buckets=(300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 259200, 604800),
)
URGENCIES: tuple[str, ...] = tuple(u.value for u in Urgency)


# --- the rules ---------------------------------------------------------------------------


def whistle_deadlines(
    policy: DeadlinePolicy,
    start: datetime,
    calendar: BusinessCalendar,
    case_resolution: ComputedDeadline | None,
) -> tuple[ComputedDeadline, ComputedDeadline]:
    """A summoned department's receipt and reply deadlines for a whistle blown at ``start``."""
    fraction = policy.warn_at_fraction
    receipt = deadline_for("whistle_receipt", start, policy.whistle_receipt, fraction, calendar)
    if case_resolution is None or case_resolution.due_at <= receipt.due_at:
        reply = deadline_for("whistle_reply", start, policy.resolution, fraction, calendar)
        return receipt, reply
    due = case_resolution.due_at
    # The case's warning, unless it has passed: then at the same fraction of what is left.
    warn = case_resolution.warn_at
    if warn <= start:
        warn = start + (due - start) * fraction
    return receipt, ComputedDeadline("whistle_reply", due, warn, case_resolution.provisional_reason)


def whistle_status(
    *,
    reported: bool,
    replied: bool,
    receipt_due_at: datetime,
    reply_due_at: datetime,
    now: datetime,
) -> WhistleStatus:
    if replied:
        return "replied"
    if not reported:
        return "receipt_overdue" if now > receipt_due_at else "awaiting_receipt"
    return "reply_overdue" if now > reply_due_at else "awaiting_reply"


def latency_seconds(since: datetime, at: datetime) -> int:
    return max(0, int((at - since) // timedelta(seconds=1)))


def department_copy(event: CloudEvent) -> CloudEvent:
    """The copy of a ladder event for a department's own topic: an event of its own (the
    outbox and every inbox key on the id), naming the original in the ``copyof`` extension
    attribute so that a consumer of every topic can count the original once."""
    return CloudEvent.model_validate({**event.to_json(), "id": str(uuid7()), "copyof": event.id})


class SubmissionRefused(Exception):
    """A receipt or reply that cannot be recorded; the subclass says why."""


class UnknownWhistle(SubmissionRefused):
    pass


class NotSummoned(SubmissionRefused):
    """The whistle exists but did not summon this department (or belongs to another case)."""


class AlreadyRecorded(SubmissionRefused):
    pass


class ReceiptRequired(SubmissionRefused):
    pass


class UnknownEvidence(SubmissionRefused):
    """A reply cites files the department never uploaded for this whistle (``ids``)."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"unknown evidence: {', '.join(ids)}")
        self.ids = ids


# --- recording -----------------------------------------------------------------------------


# A department's summons unless it has one for this whistle, returning its code if new; built
# once (see ``clocks.CASE_CLOCKS``).
_SUMMONS = WhistleSummons.__table__  # type: ignore[attr-defined]
SUMMON = (
    bound_insert(
        _SUMMONS,
        "whistle_id",
        "department_code",
        "case_id",
        "township_code",
        "matter_code",
        "reason_code",
        "reason",
        "urgency",
        "notified_at",
    )
    .on_conflict_do_nothing()
    .returning(_SUMMONS.c.department_code)
)


async def open_whistle(
    session: AsyncSession,
    blown: WhistleBlown,
    start: datetime,
    policy: DeadlinePolicy,
    calendar: BusinessCalendar,
    now: datetime,
    counties: Counties | None,
) -> list[str]:
    """Summon each department of ``blown``: its clocks, their first ladder steps and its
    notice on its topic in the case's county, in the caller's transaction. Returns the
    departments newly summoned."""
    receipt, reply = whistle_deadlines(
        policy, start, calendar, await _case_resolution(session, blown.case_id)
    )
    summoned = []
    for department in dict.fromkeys(blown.departments):
        # Not flushing the session first (see ``counties.learn``): a summons is only ever
        # inserted here.
        new = await (await session.connection()).scalar(
            SUMMON,
            {
                "whistle_id": blown.whistle_id,
                "department_code": department,
                "case_id": blown.case_id,
                "township_code": blown.township_code,
                "matter_code": blown.matter_code,
                "reason_code": blown.reason_code,
                "reason": blown.reason,
                "urgency": blown.urgency,
                "notified_at": start,
            },
        )
        if new is None:
            continue
        await insert_clocks(
            session,
            WHISTLE_CLOCKS,
            blown.case_id,
            [receipt, reply],
            policy,
            start,
            calendar,
            whistle_id=blown.whistle_id,
            department_code=department,
        )
        notice = WhistleNotified(
            case_id=blown.case_id,
            whistle_id=blown.whistle_id,
            department_code=department,
            township_code=blown.township_code,
            matter_code=blown.matter_code,
            reason_code=blown.reason_code,
            reason=blown.reason,
            urgency=blown.urgency,
            receipt_due_at=receipt.due_at,
            reply_due_at=reply.due_at,
            policy_id=policy.id,
        )
        event = await case_event(session, blown.case_id, notice, now)
        stage(session, department_topic_for(department, event, counties), event)
        summoned.append(department)
    return summoned


async def record_receipt(
    session: AsyncSession,
    *,
    whistle_id: UUID,
    department_code: str,
    receipt_no: str,
    actor: str | None,
    via: Via,
    now: datetime,
    case_id: UUID | None = None,
) -> WhistleReported:
    """报到: stop the department's receipt clock and record its receipt number."""
    summons = await _summons(session, whistle_id, department_code, case_id)
    if summons.reported_at is not None:
        raise AlreadyRecorded(f"{department_code} already reported in ({summons.receipt_no})")
    clock = await _stop(session, summons, "whistle_receipt", WhistleReported.event_type, now)
    summons.receipt_no, summons.reported_at, summons.reported_by = receipt_no, now, actor
    reported = WhistleReported(
        case_id=summons.case_id,
        whistle_id=whistle_id,
        department_code=department_code,
        receipt_no=receipt_no,
        reported_at=now,
        due_at=clock.due_at,
        on_time=now <= clock.due_at,
        latency_seconds=latency_seconds(summons.notified_at, now),
        via=via,
        actor=actor,
    )
    stage(session, WHISTLES, await case_event(session, summons.case_id, reported, now))
    urgency = summons.urgency if summons.urgency in URGENCIES else "other"
    latency = reported.latency_seconds
    after_commit(session, lambda: RECEIPT_LATENCY.labels(urgency).observe(latency))
    return reported


async def record_reply(
    session: AsyncSession,
    *,
    whistle_id: UUID,
    department_code: str,
    result: str,
    evidence: list[str],
    actor: str | None,
    via: Via,
    now: datetime,
    case_id: UUID | None = None,
) -> WhistleReplied:
    """The department's result: stop its reply clock and record what it did."""
    summons = await _summons(session, whistle_id, department_code, case_id)
    if summons.replied_at is not None:
        raise AlreadyRecorded(f"{department_code} already replied to this whistle")
    if summons.reported_at is None:
        raise ReceiptRequired(f"{department_code} has not reported in (报到) for this whistle")
    # Evidence that holds: only files the department uploaded for this whistle.
    missing = not_stored(evidence, await _stored_evidence(session, summons, evidence))
    if missing:
        raise UnknownEvidence(missing)
    clock = await _stop(session, summons, "whistle_reply", WhistleReplied.event_type, now)
    summons.result, summons.evidence = result, list(evidence)
    summons.replied_at, summons.replied_by = now, actor
    replied = WhistleReplied(
        case_id=summons.case_id,
        whistle_id=whistle_id,
        department_code=department_code,
        result=result,
        evidence=list(evidence),
        replied_at=now,
        due_at=clock.due_at,
        on_time=now <= clock.due_at,
        via=via,
        actor=actor,
    )
    stage(session, WHISTLES, await case_event(session, summons.case_id, replied, now))
    return replied


async def _stored_evidence(
    session: AsyncSession, summons: WhistleSummons, ids: list[str]
) -> set[str]:
    if not ids:
        return set()
    return set(
        await session.scalars(
            select(WhistleEvidence.sha256).where(
                WhistleEvidence.whistle_id == summons.whistle_id,  # type: ignore[arg-type]
                WhistleEvidence.department_code == summons.department_code,  # type: ignore[arg-type]
                WhistleEvidence.sha256.in_(ids),  # type: ignore[attr-defined]
            )
        )
    )


async def keep_evidence(
    session: AsyncSession,
    *,
    whistle_id: UUID,
    department_code: str,
    stored: StoredFile,
    by: str,
    now: datetime,
) -> tuple[WhistleEvidence, bool]:
    """Record a file the summoned department uploaded for its reply; whether this upload
    created the record (False: the same bytes were uploaded for the whistle before)."""
    await _summons(session, whistle_id, department_code, None)
    created = await session.scalar(
        insert(WhistleEvidence)
        .values(
            whistle_id=whistle_id,
            department_code=department_code,
            sha256=stored.sha256,
            content_type=stored.content_type,
            size=stored.size,
            uploaded_by=by,
            uploaded_at=now,
        )
        .on_conflict_do_nothing(index_elements=["whistle_id", "department_code", "sha256"])
        .returning(WhistleEvidence.sha256)  # type: ignore[arg-type]
    )
    row = await session.get(WhistleEvidence, (whistle_id, department_code, stored.sha256))
    assert row is not None
    return row, created is not None


async def follow_extension(
    session: AsyncSession,
    decided: ExtensionDecided,
    *,
    extra_working_days: int | None,
    calendar: BusinessCalendar,
    now: datetime,
    counties: Counties | None,
) -> list[CaseDeadline]:
    """Move with an approved extension of the case's resolution clock the running reply clocks
    due with it (a department replies within the case's resolution deadline), in the caller's
    transaction; each move is recorded as ``decided`` for that department's clock, and a copy
    goes on the department's topic. A reply clock due at another time (counted from the whistle
    because the case's deadline came too early, or there was none) was not derived from it and
    stays."""
    assert decided.approved and decided.new_due_at is not None
    replies = await replies_due_with(session, decided.case_id, decided.old_due_at)
    for reply in replies:
        warn = moved_warning(
            due_at=reply.due_at,
            warn_at=reply.warn_at,
            new_due_at=decided.new_due_at,
            extra_working_days=extra_working_days,
            calendar=calendar,
        )
        await move_clock(session, reply, due_at=decided.new_due_at, warn_at=warn, now=now)
        moved = decided.model_copy(
            update={
                "kind": "whistle_reply",
                "round": reply.round,
                "whistle_id": reply.whistle_id,
                "department_code": reply.department_code,
            }
        )
        event = await case_event(session, decided.case_id, moved, now)
        stage(session, DEADLINES, event)
        assert reply.department_code is not None
        topic = department_topic_for(reply.department_code, event, counties)
        stage(session, topic, department_copy(event))
    return list(replies)


async def replies_due_with(
    session: AsyncSession, case_id: UUID, due_at: datetime
) -> list[CaseDeadline]:
    """The case's running reply clocks due at ``due_at`` (with its resolution clock), locked:
    they move when that clock moves (an extension, a recount)."""
    return list(
        (
            await session.scalars(
                select(CaseDeadline)
                .where(
                    CaseDeadline.case_id == case_id,
                    CaseDeadline.kind == "whistle_reply",
                    CaseDeadline.status == "running",
                    CaseDeadline.due_at == due_at,
                )
                .order_by(CaseDeadline.id)  # type: ignore[arg-type]
                .with_for_update()
            )
        ).all()
    )


async def close_whistles(
    session: AsyncSession, case_id: UUID, closed_at: datetime, closed_by: str, now: datetime
) -> list[DeadlineStopped]:
    """The case closed: every running clock of its whistles lapses (``DeadlineStopped`` with
    ``lapsed``), its pending ladder step cancelled, so no department is chased or supervised
    about a closed case. Reopening the case does not restart them: whistling again is the
    township's call."""
    whistles = CaseDeadline.whistle_id.is_not(None)  # type: ignore[union-attr]
    return await lapse_running(session, case_id, whistles, closed_at, closed_by, now)


async def summoned_departments(session: AsyncSession, whistle_id: UUID) -> list[str]:
    """The departments a whistle summoned; empty for an unknown whistle."""
    return list(
        (
            await session.scalars(
                select(WhistleSummons.department_code)
                .where(WhistleSummons.whistle_id == whistle_id)
                .order_by(WhistleSummons.department_code)
            )
        ).all()
    )


async def _summons(
    session: AsyncSession, whistle_id: UUID, department_code: str, case_id: UUID | None
) -> WhistleSummons:
    """The department's summons, locked: concurrent receipts for it are recorded one by one."""
    summons = await session.get(WhistleSummons, (whistle_id, department_code), with_for_update=True)
    if summons is None:
        known = await session.scalar(
            select(exists().where(WhistleSummons.whistle_id == whistle_id))
        )
        if not known:
            raise UnknownWhistle(f"no whistle {whistle_id}")
        raise NotSummoned(f"whistle {whistle_id} did not summon department {department_code}")
    if case_id is not None and summons.case_id != case_id:
        raise NotSummoned(f"whistle {whistle_id} belongs to another case than {case_id}")
    return summons


async def _stop(
    session: AsyncSession, summons: WhistleSummons, kind: str, stopped_by: str, now: datetime
) -> CaseDeadline:
    clock = await session.scalar(
        select(CaseDeadline)
        .where(
            CaseDeadline.whistle_id == summons.whistle_id,
            CaseDeadline.department_code == summons.department_code,
            CaseDeadline.kind == kind,
        )
        .order_by(CaseDeadline.round.desc())  # type: ignore[attr-defined]
        .limit(1)
        .with_for_update()
    )
    assert clock is not None, "a summons always has its clocks"
    if clock.status == "running":
        await stop_clock(session, clock, now, stopped_by, now)
    return clock


async def _case_resolution(session: AsyncSession, case_id: UUID) -> ComputedDeadline | None:
    """The case's own running resolution clock, if it has one."""
    running = (
        await session.execute(
            select(CaseDeadline.due_at, CaseDeadline.warn_at, CaseDeadline.provisional_reason)
            .where(
                CaseDeadline.case_id == case_id,
                CaseDeadline.kind == "resolution",
                CaseDeadline.whistle_id.is_(None),  # type: ignore[union-attr]
                CaseDeadline.status == "running",
            )
            .order_by(CaseDeadline.round.desc())  # type: ignore[attr-defined]
            .limit(1)
        )
    ).first()
    if running is None:
        return None
    return ComputedDeadline("resolution", *running)
