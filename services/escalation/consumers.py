"""What escalation consumes, and what it does with each event type.

Three topics:

- ``dispatch.cases.v1``: the case lifecycle sets, stops and restarts the case's clocks
  (``services/escalation/clocks.py``); a referral (移送) and a request for assistance (协助)
  each start a clock the township answers (by its acceptance, by the assisting unit's
  progress); a whistle blown summons county departments and the closing lapses their clocks
  (``services/escalation/whistle_protocol.py``); a legal review (法制审核) asked for starts its
  clock, its decision stops it. Any other case event has no handler here, so
  the inbox leaves it alone.
- ``escalation.meetings.v1``: a department's report that a joint meeting's decision it owns
  is done (联席会议), submitted from its own system with its token as receipts are; escalation's
  own records of the meetings have no handler.
- ``escalation.whistles.v1``: the departments' receipts (报到) and replies, submitted from their
  own systems. The inbox takes one only with the department's token (the Kafka header
  ``authorization``), verified as over HTTP and acting for the department the payload names;
  the handler gets the token's principal, whose subject is the actor if no officer is named,
  and dead-letters a submission about a case of another county than the token's, with the
  reason: departments of two counties share codes, and answer only their own county's cases.
  Escalation's own records on that topic (``WhistleReported``, ``WhistleReplied``) have no
  handler: it wrote them.

The handlers are thin: the payload, the time that counts, a call into the service layer. Which
time counts is the one rule they hold. A clock runs from the case event's own time (when the
case was assigned, accepted, closed), not from when this service got round to it. A department's
submission counts at escalation's own time of recording, as over HTTP: the liability timeline
must not rest on the clock of the party it judges.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import CloudEvent
from contracts.events import (
    CaseAccepted,
    CaseAssigned,
    CaseAssistanceRequested,
    CaseClosed,
    CaseLegalReviewDecided,
    CaseLegalReviewRequested,
    CaseProgressRecorded,
    CaseReferred,
    CaseReopened,
    CaseResolved,
    MeetingDecisionReported,
    MeetingDecisionReportSubmitted,
    WhistleBlown,
    WhistleReceiptSubmitted,
    WhistleReplySubmitted,
)
from contracts.tenancy import Counties
from contracts.topics import CASES, MEETINGS, WHISTLES
from services.escalation import clocks, counties, meeting_service, whistle_protocol
from services.escalation.calendar import BusinessCalendar
from services.escalation.deadlines import ASSISTANCE_RESPONSE, LEGAL_REVIEW, REFERRAL_ACCEPTANCE
from services.escalation.meetings import MeetingRefused
from services.escalation.policies import DeadlinePolicy, PolicyBook
from services.escalation.whistle_protocol import AlreadyRecorded, SubmissionRefused
from services.runtime.auth import Principal
from services.runtime.clock import Clock
from services.runtime.inbox import Handler, PoisonEvent, Subscription
from services.runtime.service import Runtime

log = logging.getLogger(__name__)


def subscription(
    runtime: Runtime,
    *,
    policies: Callable[[], PolicyBook],
    calendar: Callable[[], BusinessCalendar],
) -> Subscription:
    """Escalation's whole subscription. ``policies`` and ``calendar`` give the ones in force
    when an event is handled."""
    on = Handlers(policies, calendar, runtime.clock, runtime.counties)
    case_handlers: dict[str, Handler] = {
        # dispatch.cases.v1: the case's own clocks, a referral's (移送) and an assistance
        # request's (协助), which the township answers
        CaseReferred.event_type: on.case_referred,
        CaseAssistanceRequested.event_type: on.assistance_requested,
        CaseProgressRecorded.event_type: on.progress_recorded,
        CaseAssigned.event_type: on.case_assigned,
        CaseAccepted.event_type: on.case_accepted,
        CaseResolved.event_type: on.case_resolved,
        CaseReopened.event_type: on.case_reopened,
        # dispatch.cases.v1: a major penalty decision's legal review (法制审核), on its own clock
        CaseLegalReviewRequested.event_type: on.legal_review_requested,
        CaseLegalReviewDecided.event_type: on.legal_review_decided,
        # dispatch.cases.v1: the whistle protocol
        WhistleBlown.event_type: on.whistle_blown,
        CaseClosed.event_type: on.case_closed,
        # dispatch.cases.v1: a township unit reported a joint meeting's decision done
        MeetingDecisionReported.event_type: on.unit_reported,
    }
    return Subscription(
        topics=(CASES, WHISTLES, MEETINGS),
        # Each first learns the case's county: what escalation says of it carries it.
        handlers={event_type: in_county(handler) for event_type, handler in case_handlers.items()},
        # escalation.whistles.v1: the departments' submissions, with their verified senders
        submissions={
            WhistleReceiptSubmitted.event_type: on.receipt_submitted,
            WhistleReplySubmitted.event_type: on.reply_submitted,
            # escalation.meetings.v1: a decision of a joint meeting reported done
            MeetingDecisionReportSubmitted.event_type: on.decision_reported,
        },
        verifier=runtime.verifier,
    )


def in_county(handler: Handler) -> Handler:
    """``handler`` after keeping the county its case event names (counties.py)."""

    async def learning(session: AsyncSession, event: CloudEvent, topic: str) -> None:
        await counties.learn(session, event)
        await handler(session, event, topic)

    return learning


class Handlers:
    """One method per consumed event type, each ``(session, event, topic)`` as the inbox calls
    it (a submission's with its sender too), inside the transaction that records the event as
    handled."""

    def __init__(
        self,
        policies: Callable[[], PolicyBook],
        calendar: Callable[[], BusinessCalendar],
        clock: Clock,
        counties: Counties | None,
    ) -> None:
        self._policies = policies
        self._calendar = calendar
        self._clock = clock
        self._counties = counties

    async def case_assigned(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        assigned = event.payload(CaseAssigned)
        policy = self._policy(assigned.deadline_policy)
        await clocks.start_clocks(
            session, assigned, policy, event.time, self._calendar(), self._clock()
        )

    async def case_referred(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        referred = event.payload(CaseReferred)
        await self._answer_clock(
            session,
            event,
            referred.case_id,
            REFERRAL_ACCEPTANCE,
            referred.urgency,
            referred.deadline_policy,
        )

    async def assistance_requested(
        self, session: AsyncSession, event: CloudEvent, topic: str
    ) -> None:
        requested = event.payload(CaseAssistanceRequested)
        await self._answer_clock(
            session,
            event,
            requested.case_id,
            ASSISTANCE_RESPONSE,
            requested.urgency,
            requested.deadline_policy,
        )

    async def progress_recorded(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        recorded = event.payload(CaseProgressRecorded)
        # The assisting township unit answered the department's request (协助); the lead
        # unit's own progress answers nothing.
        if recorded.supporting_unit_id is not None:
            await self._stop(session, event, recorded.case_id, ASSISTANCE_RESPONSE)

    async def case_accepted(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        case_id = event.payload(CaseAccepted).case_id
        await self._stop(session, event, case_id, "first_response")
        # A referred case's acceptance also answers the referral (移送); none runs otherwise.
        await self._stop(session, event, case_id, REFERRAL_ACCEPTANCE)

    async def case_resolved(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        case_id = event.payload(CaseResolved).case_id
        await self._stop(session, event, case_id, "resolution")

    async def case_reopened(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        case_id = event.payload(CaseReopened).case_id
        await clocks.restart_resolution(
            session, case_id, event.time, self._calendar(), self._clock()
        )

    async def legal_review_requested(
        self, session: AsyncSession, event: CloudEvent, topic: str
    ) -> None:
        """法制审核 asked for: the review's clock, under the policy the case's own clocks were
        set under (as it stands in the book now, as for a referral's clock)."""
        case_id = event.payload(CaseLegalReviewRequested).case_id
        policy_id = await clocks.case_policy_id(session, case_id)
        if policy_id is None:
            raise PoisonEvent(f"case {case_id} has no clocks: no policy for its legal review")
        await clocks.start_legal_review_clock(
            session, case_id, self._policy(policy_id), event.time, self._calendar(), self._clock()
        )

    async def legal_review_decided(
        self, session: AsyncSession, event: CloudEvent, topic: str
    ) -> None:
        """Approved or returned, the review answered: its clock stops (a return's resubmission
        is a new request, a new round)."""
        case_id = event.payload(CaseLegalReviewDecided).case_id
        await self._stop(session, event, case_id, LEGAL_REVIEW)

    async def whistle_blown(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        blown = event.payload(WhistleBlown)
        policy = self._policies().for_urgency(blown.urgency)
        if policy is None:
            raise PoisonEvent(f"no deadline policy for urgency {blown.urgency!r}")
        await whistle_protocol.open_whistle(
            session, blown, event.time, policy, self._calendar(), self._clock(), self._counties
        )

    async def case_closed(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        case_id = event.payload(CaseClosed).case_id
        await whistle_protocol.close_whistles(
            session, case_id, event.time, event.type, self._clock()
        )
        await clocks.lapse_answer_clocks(session, case_id, event.time, event.type, self._clock())
        await meeting_service.lapse_decisions(
            session, case_id, event.time, event.type, self._clock()
        )

    async def receipt_submitted(
        self, session: AsyncSession, event: CloudEvent, topic: str, sender: Principal
    ) -> None:
        submitted = event.payload(WhistleReceiptSubmitted)
        await self._in_senders_county("receipt", session, submitted.case_id, sender)
        recording = whistle_protocol.record_receipt(
            session,
            whistle_id=submitted.whistle_id,
            department_code=submitted.department_code,
            receipt_no=submitted.receipt_no,
            actor=submitted.officer or sender.subject,
            via="kafka",
            now=self._clock(),
            case_id=submitted.case_id,
        )
        await _submission("receipt", recording)

    async def reply_submitted(
        self, session: AsyncSession, event: CloudEvent, topic: str, sender: Principal
    ) -> None:
        submitted = event.payload(WhistleReplySubmitted)
        await self._in_senders_county("reply", session, submitted.case_id, sender)
        recording = whistle_protocol.record_reply(
            session,
            whistle_id=submitted.whistle_id,
            department_code=submitted.department_code,
            result=submitted.result,
            evidence=list(submitted.evidence),
            actor=submitted.officer or sender.subject,
            via="kafka",
            now=self._clock(),
            case_id=submitted.case_id,
        )
        await _submission("reply", recording)

    async def unit_reported(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        """A township unit's decision reported done through dispatch, which checked the
        member's unit token against the decision's owner."""
        reported = event.payload(MeetingDecisionReported)
        await _decision_report(
            meeting_service.report_done(
                session,
                reported.decision_id,
                owner_kind="unit",
                acting_for=[reported.unit_id],
                result=reported.result,
                evidence=list(reported.evidence),
                actor=reported.actor,
                via="dispatch",
                now=self._clock(),
            )
        )

    async def decision_reported(
        self, session: AsyncSession, event: CloudEvent, topic: str, sender: Principal
    ) -> None:
        """A department's decision reported done from its own system. The inbox checked that
        the token acts for the ``department_code`` named; the decision must be that
        department's own. A second report is ignored (sent at least once); one that can never
        be recorded (unknown decision, another's) is dead-lettered with the reason."""
        submitted = event.payload(MeetingDecisionReportSubmitted)
        await _decision_report(
            meeting_service.report_done(
                session,
                submitted.decision_id,
                owner_kind="department",
                acting_for=[submitted.department_code],
                result=submitted.result,
                evidence=list(submitted.evidence),
                actor=submitted.officer or sender.subject,
                via="kafka",
                now=self._clock(),
                reporter=sender,
                counties=self._counties,
            )
        )

    async def _in_senders_county(
        self, what: str, session: AsyncSession, case_id: UUID, sender: Principal
    ) -> None:
        """Dead-letter a department's submission about another county's case: by the rule
        of every read (counties.py), as over HTTP, where it is a missing whistle (404)."""
        if await counties.outside_readers_counties(session, [case_id], sender, self._counties):
            raise PoisonEvent(
                f"{what} refused: case {case_id} is not of the counties the token acts for "
                f"({', '.join(sorted(sender.counties() or ()))})"
            )

    async def _answer_clock(
        self,
        session: AsyncSession,
        event: CloudEvent,
        case_id: UUID,
        kind: str,
        urgency: str,
        policy_id: str,
    ) -> None:
        await clocks.start_answer_clock(
            session,
            case_id,
            kind,
            urgency,
            self._policy(policy_id),
            event.time,
            self._calendar(),
            self._clock(),
        )

    def _policy(self, policy_id: str) -> DeadlinePolicy:
        """The policy in force a case event names; an unknown one dead-letters the event."""
        policy = self._policies().get(policy_id)
        if policy is None:
            raise PoisonEvent(f"unknown deadline policy {policy_id!r}")
        return policy

    async def _stop(
        self, session: AsyncSession, event: CloudEvent, case_id: UUID, kind: str
    ) -> None:
        await clocks.stop_case_clock(
            session, case_id, kind, stopped_at=event.time, stopped_by=event.type, now=self._clock()
        )


async def _submission(what: str, recording: Awaitable[object]) -> None:
    """Record a department's submission from Kafka. A second one for the same whistle is
    ignored rather than refused as over HTTP (409): the department's system sends at least
    once, and may send again after a crash. One that can never be recorded (unknown whistle,
    department not summoned, reply before receipt) is dead-lettered with the reason."""
    try:
        await recording
    except AlreadyRecorded as exc:
        log.info("%s ignored: %s", what, exc)
    except SubmissionRefused as exc:
        raise PoisonEvent(f"{what} refused: {exc}") from exc


async def _decision_report(recording: Awaitable[object]) -> None:
    """Record a decision reported done by event. A second report is ignored (sent at least
    once); one that can never be recorded (unknown decision, another's) is dead-lettered."""
    try:
        await recording
    except MeetingRefused as refused:
        if refused.refusal.kind == "conflict":
            log.info("decision report ignored: %s", refused)
            return
        reason = f"decision report refused: {refused.refusal.rule}: {refused}"
        raise PoisonEvent(reason) from refused
