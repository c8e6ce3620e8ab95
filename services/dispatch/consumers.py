"""Everything dispatch consumes, and what each event does: the whole subscription in one place.

Tips (``intake.tips.v1``) go to the case service (cases.py): a received tip opens or joins a
case, a supplied place re-places a case waiting for one, a dissatisfied rating reopens its case,
an erased tip's words and place are erased here too (retention.py). A county department's
referral (``dispatch.referrals.v1``, with its token) opens the township's case as ``POST
/v1/referrals`` does. Every event of a case (``dispatch.cases.v1``,
``escalation.deadlines.v1``), and each tip's words, are kept for the console (console_feed.py).
A joint meeting's decision a township unit owns (``escalation.meetings.v1``) is kept for the
unit to report done through dispatch, and marked done when escalation records it
(meeting_decisions.py).
Each handler runs in the inbox's transaction: its effects commit with the event's ``(source,
id)``, exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from uuid import UUID

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    InspectionTaskCompleted,
    InspectionTaskPlanned,
    MeetingDecisionDone,
    MeetingDecisionRecorded,
    PersonalDataErased,
    ReferralSubmitted,
    StaffAssessed,
    TipRated,
    TipReceived,
    TipSupplemented,
)
from contracts.topics import CASES, DEADLINES, MEETINGS, REFERRALS, TIPS, TOPICS
from services.dispatch import console_feed, meeting_decisions, retention
from services.dispatch.cases import CaseService, Referral
from services.dispatch.classifier import TriageModel
from services.dispatch.errors import (
    CaseNotFound,
    NotPermitted,
    ReferralRefused,
    TipNotOfCase,
    TransitionRefused,
)
from services.dispatch.triage import model_texts
from services.dispatch.wiring import case_service, county_model, current_counties
from services.runtime.auth import Principal
from services.runtime.inbox import Handler, PoisonEvent, Subscription
from services.runtime.service import Runtime

log = logging.getLogger(__name__)

# Kept on each case's timeline, for the console.
TIMELINE_TOPICS = (CASES, DEADLINES)
# What dispatch.cases.v1 carries that is not of a case (keyed by an officer or a task).
NOT_OF_A_CASE = (StaffAssessed, InspectionTaskPlanned, InspectionTaskCompleted)

CaseHandler = Callable[[CaseService, AsyncSession, CloudEvent], Awaitable[None]]
"""``(cases, session, event)``: a handler that changes cases, given the case service."""


def subscription(runtime: Runtime) -> Subscription:
    """The topics dispatch consumes, then each event type and its handler."""

    def with_cases(handle: CaseHandler) -> Handler:
        async def handler(session: AsyncSession, event: CloudEvent, topic: str) -> None:
            # In the event's county: a tip is routed by its own county's reference data.
            await handle(case_service(runtime, session, event.county), session, event)

        return handler

    async def referral_submitted(
        session: AsyncSession, event: CloudEvent, topic: str, sender: Principal
    ) -> None:
        await refer(case_service(runtime, session, event.county), event, sender)

    def read_tips_together(events: Sequence[CloudEvent]) -> None:
        """A batch's tips read by the triage model in one pass before their handlers run, each
        of which then finds its tip's reading (classifier.py says why)."""
        counties = current_counties(runtime)
        texts: dict[int, tuple[TriageModel, list[str]]] = {}
        for event in events:
            if event.type != TipReceived.event_type:
                continue
            try:
                tip = event.payload(TipReceived)
            except ValidationError:
                continue  # its handler dead-letters it
            reference = counties.of(event.county)
            model = county_model(runtime, reference)
            if model is not None:
                read = texts.setdefault(id(model), (model, []))[1]
                read += model_texts(tip.text, tip.category_hint, reference)
        for model, read in texts.values():
            model.guesses_each(read)

    return Subscription(
        topics=(TIPS, *TIMELINE_TOPICS, REFERRALS, MEETINGS),
        before_batch=read_tips_together,
        handlers={
            TipReceived.event_type: with_cases(tip_received),
            TipSupplemented.event_type: with_cases(tip_supplemented),
            TipRated.event_type: with_cases(tip_rated),
            PersonalDataErased.event_type: personal_data_erased,
            # escalation.meetings.v1: the decisions the townships' units own (联席会议)
            MeetingDecisionRecorded.event_type: decision_recorded,
            MeetingDecisionDone.event_type: decision_done,
            **{
                message.event_type: on_timeline
                for topic in TOPICS
                if topic.name in TIMELINE_TOPICS
                for message in topic.messages
                # An assessment opinion is of an officer, an inspection task of a unit, not of
                # a case: no timeline to keep them on.
                if message not in NOT_OF_A_CASE
            },
        },
        # dispatch.referrals.v1: a department's referral (移送), with its verified sender
        submissions={ReferralSubmitted.event_type: referral_submitted},
        verifier=runtime.verifier,
    )


async def tip_received(cases: CaseService, session: AsyncSession, event: CloudEvent) -> None:
    """The tip opens or joins a case; its words are kept for the dispatcher who reads it."""
    tip = event.payload(TipReceived)
    await cases.receive(tip)
    await console_feed.keep_tip_text(session, tip)


async def tip_supplemented(cases: CaseService, session: AsyncSession, event: CloudEvent) -> None:
    await cases.supplement(event.payload(TipSupplemented))


async def tip_rated(cases: CaseService, session: AsyncSession, event: CloudEvent) -> None:
    rating = event.payload(TipRated)
    try:
        await cases.rated(rating)
    except CaseNotFound as exc:
        raise PoisonEvent(f"a rating for case {exc.case_id}, which dispatch does not have") from exc
    except TipNotOfCase as exc:
        raise PoisonEvent(str(exc)) from exc
    except TransitionRefused as refused:
        # Intake only lets a resolved case be rated, but the topic is not proof of that.
        log.warning("ignoring a dissatisfied rating of tip %s: %s", rating.tip_id, refused.reason)


async def personal_data_erased(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """Intake erased the tip: dispatch's copies of its words and place go with it, now."""
    erased = event.payload(PersonalDataErased)
    await retention.erase_tip(session, erased.tip_id)


async def decision_recorded(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    await meeting_decisions.keep(session, event.payload(MeetingDecisionRecorded))


async def decision_done(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    await meeting_decisions.mark_done(session, event.payload(MeetingDecisionDone))


async def on_timeline(session: AsyncSession, event: CloudEvent, topic: str) -> None:
    """Any event of a case, on the case's timeline (and its clocks, for a deadline event)."""
    try:
        case_id = UUID(event.subject or "")
    except ValueError as exc:
        raise PoisonEvent(f"{event.type} has no case id as its subject") from exc
    await console_feed.record_on_timeline(session, case_id, event)


async def refer(cases: CaseService, event: CloudEvent, sender: Principal) -> None:
    """移送 from a department's own system: the township's case, as over HTTP. Sent again (at
    least once), the same referral id opens nothing more; one the rules refuse is
    dead-lettered with the reason."""
    submitted = event.payload(ReferralSubmitted)
    referral = Referral(**submitted.model_dump(exclude={"referral_id"}))
    try:
        await cases.refer(sender, referral, submitted.referral_id)  # a resubmission opens nothing
    except (ReferralRefused, NotPermitted) as exc:
        raise PoisonEvent(f"referral {submitted.referral_id} refused: {exc}") from exc
