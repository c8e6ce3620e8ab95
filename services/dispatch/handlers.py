"""Dispatch turns each received tip into a case: triage, route, and say so in events."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import CloudEvent, new_event
from contracts.events import CaseAssigned, CaseOpened, CaseTriageRequired, TipReceived
from contracts.topics import CASES
from services.dispatch.models import HELD_STATUSES, Case
from services.dispatch.reference import ReferenceData, Urgency
from services.dispatch.routing import Assignment, NeedsTriage, route
from services.dispatch.triage import classify, locate
from services.runtime.clock import Clock
from services.runtime.outbox import stage

SOURCE = "whistle/dispatch"


class TipIntake:
    """Handles ``whistle.tip.received``: one new case per tip."""

    def __init__(
        self,
        reference: Callable[[], ReferenceData],
        clock: Clock,
        *,
        confidence_threshold: float,
        timezone: str,
    ) -> None:
        self._reference = reference
        self._clock = clock
        self._threshold = confidence_threshold
        self._zone = ZoneInfo(timezone)

    async def __call__(self, session: AsyncSession, event: CloudEvent, topic: str) -> None:
        tip = event.payload(TipReceived)
        reference = self._reference()
        now = self._clock()
        classification = classify(tip.text, tip.category_hint, reference)
        location = locate(tip.grid_id, tip.address, reference, tip.location)
        item = classification.item
        urgency = item.default_urgency if item else Urgency.GENERAL

        outcome: Assignment | NeedsTriage
        if location.township is None:
            outcome = NeedsTriage("county", "no_location", "无法确定所属乡镇，转县级分拨")
        elif item is None or classification.confidence < self._threshold:
            outcome = NeedsTriage(
                f"township:{location.township}",
                "low_confidence",
                f"事项识别置信度 {classification.confidence:.2f} 低于 {self._threshold:.2f}，"
                "待调度员人工分拨",
            )
        else:
            outcome = route(
                item,
                location.township,
                location.village,
                reference,
                await open_load(session),
                now.astimezone(self._zone).date(),
            )

        case_id = uuid7()
        explanation = [*location.explanation, *classification.explanation]
        case = Case(
            id=case_id,
            tip_id=tip.tip_id,
            status="assigned" if isinstance(outcome, Assignment) else "triage",
            matter_code=item.code if item else None,
            township_code=location.township,
            village_code=location.village,
            grid_id=location.grid,
            urgency=urgency.value,
            catalogue_version=reference.version,
            routing={"rule": outcome.rule, "explanation": explanation},
            created_at=now,
            updated_at=now,
        )
        subject = str(case_id)
        stage(
            session,
            CASES,
            new_event(
                SOURCE,
                subject,
                CaseOpened(
                    case_id=case_id,
                    tip_id=tip.tip_id,
                    matter_code=case.matter_code,
                    matter_name=item.name if item else None,
                    confidence=classification.confidence,
                    township_code=location.township,
                    village_code=location.village,
                    grid_id=location.grid,
                    urgency=urgency.value,
                    catalogue_version=reference.version,
                    explanation=explanation,
                ),
                now,
            ),
        )
        if isinstance(outcome, NeedsTriage):
            case.queue = outcome.queue
            case.routing["explanation"].append(outcome.reason)
            data: CaseAssigned | CaseTriageRequired = CaseTriageRequired(
                case_id=case_id,
                tip_id=tip.tip_id,
                queue=outcome.queue,
                reason=outcome.reason,
                catalogue_version=reference.version,
            )
        else:
            assert item is not None
            case.unit_id = outcome.unit.id
            case.staff_id = outcome.staff.id if outcome.staff else None
            case.routing["explanation"].extend(outcome.explanation)
            data = CaseAssigned(
                case_id=case_id,
                tip_id=tip.tip_id,
                unit_id=outcome.unit.id,
                unit_kind=outcome.unit.kind.value,
                township_code=location.township,
                staff_id=case.staff_id,
                matter_code=item.code,
                authority=item.authority.value,
                urgency=urgency.value,
                deadline_policy=item.deadline_policy,
                catalogue_version=reference.version,
                rule=outcome.rule,
                explanation=list(outcome.explanation),
            )
        session.add(case)
        stage(session, CASES, new_event(SOURCE, subject, data, now))


async def open_load(session: AsyncSession) -> dict[str, int]:
    """How many open cases each staff member holds."""
    rows = await session.execute(
        select(Case.staff_id, func.count())
        .where(Case.status.in_(HELD_STATUSES), Case.staff_id.is_not(None))  # type: ignore[attr-defined]
        .group_by(Case.staff_id)
    )
    return {staff_id: count for staff_id, count in rows.all()}
