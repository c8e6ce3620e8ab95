"""The service layer of assessment opinions (双重考核): the pure rule (``assessments``) decides
whom a leader may assess; this stages the opinion as ``whistle.staff.assessed`` in the caller's
transaction (the outbox), keyed by the officer so that their opinions stay in order."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import new_event
from contracts.events import AssessmentGrade, StaffAssessed
from contracts.topics import CASES
from reference.county import ReferenceData
from services.dispatch.assessments import assessee
from services.dispatch.cases import SOURCE
from services.runtime.auth import Principal
from services.runtime.outbox import stage


def record_assessment(
    session: AsyncSession,
    reference: ReferenceData,
    leader: Principal,
    staff_id: str,
    period: str,
    grade: AssessmentGrade,
    opinion: str,
    now: datetime,
    assessment_id: UUID,
) -> StaffAssessed:
    """Stages the opinion, or raises ``NotAssessable`` with nothing staged."""
    who = assessee(reference, leader.scopes, staff_id, period)
    data = StaffAssessed(
        assessment_id=assessment_id,
        staff_id=who.staff_id,
        unit_id=who.unit_id,
        department_code=who.department_code,
        township_code=who.township_code,
        period=period,
        grade=grade,
        opinion=opinion,
        seal=who.seal,
        assessed_by=leader.subject,
        assessed_at=now,
    )
    stage(session, CASES, new_event(SOURCE, who.staff_id, data, now))
    return data
