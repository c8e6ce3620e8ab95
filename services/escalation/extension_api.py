"""Extensions (延期) over HTTP: the acting unit asks, the township's command centre or a county
supervisor decides (rules in ``services/escalation/extensions.py``).

Who decides: the deadline is the township's promise to the citizen (接诉即办 runs through its
command centre, 指挥中心), so a ``dispatcher`` scoped to the case's township may grant more time;
a ``county_supervisor`` (督办) may for any case, and is the only one for a case held by a county
department outside any township. The unit asking never decides its own request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, status
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import ExtensionDecided, ExtensionRequested
from contracts.tenancy import Counties
from contracts.topics import DEADLINES
from services.escalation.calendar import BusinessCalendar
from services.escalation.calendar_watch import current_calendar
from services.escalation.clocks import latest_clock, move_clock
from services.escalation.counties import case_event, of_readers_counties
from services.escalation.extensions import (
    ExtensionConflict,
    InvalidExtension,
    check_decision,
    check_request,
    moved_warning,
    requested_deadline,
)
from services.escalation.models import (
    CaseAssignment,
    CaseDeadline,
    DeadlineExtension,
)
from services.escalation.whistle_protocol import follow_extension
from services.runtime.auth import Principal, require_roles
from services.runtime.outbox import stage
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["extensions"])


class ExtensionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["first_response", "resolution"]
    requested_due_at: AwareDatetime | None = None
    extra_working_days: int | None = Field(default=None, ge=1, le=60)
    reason: str = Field(min_length=1, max_length=500)

    @model_validator(mode="after")
    def _one_way(self) -> ExtensionIn:
        if (self.requested_due_at is None) == (self.extra_working_days is None):
            raise ValueError("give either requested_due_at or extra_working_days")
        return self


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    approved: bool
    note: str | None = Field(default=None, max_length=500)


class ExtensionView(BaseModel):
    request_id: UUID = Field(validation_alias="id")
    case_id: UUID
    kind: str
    round: int
    status: str
    due_at: datetime = Field(description="the deadline in force when it was requested")
    requested_due_at: datetime
    extra_working_days: int | None
    reason: str
    requested_by: str
    requested_by_role: str
    requested_at: datetime
    decided_by: str | None
    decided_by_role: str | None
    decided_at: datetime | None
    note: str | None


class CaseExtensions(BaseModel):
    case_id: UUID
    extensions: list[ExtensionView]


def _view(row: DeadlineExtension) -> ExtensionView:
    return ExtensionView.model_validate(row, from_attributes=True)


async def _assignment(
    session: AsyncSession, case_id: UUID, principal: Principal, counties: Counties | None
) -> CaseAssignment | None:
    """The case's assignment, if the case is of the principal's counties: another county's
    case is answered as a missing one (services/escalation/counties.py)."""
    held: CaseAssignment | None = await session.scalar(
        select(CaseAssignment).where(
            CaseAssignment.case_id == case_id,  # type: ignore[arg-type]
            of_readers_counties(CaseAssignment.case_id, principal, counties),
        )
    )
    return held


async def _holder(
    session: AsyncSession, case_id: UUID, principal: Principal, counties: Counties | None
) -> CaseAssignment:
    held = await _assignment(session, case_id, principal, counties)
    if held is None:
        raise Problem(404, "Not Found", f"Escalation keeps no assigned case {case_id}.")
    return held


def _decider_role(principal: Principal, held: CaseAssignment) -> str | None:
    if "county_supervisor" in principal.roles:
        return "county_supervisor"
    if (
        "dispatcher" in principal.roles
        and held.township_code
        and principal.may_act_on("township", held.township_code)
    ):
        return "dispatcher"
    return None


def _may_read(principal: Principal, held: CaseAssignment) -> bool:
    return (
        bool(principal.roles & {"county_supervisor", "auditor"})
        or _decider_role(principal, held) is not None
        or ("unit_member" in principal.roles and principal.may_act_on("unit", held.unit_id))
    )


@router.post(
    "/cases/{case_id}/extensions",
    response_model=ExtensionView,
    status_code=status.HTTP_201_CREATED,
)
async def request_extension(
    case_id: UUID,
    body: ExtensionIn,
    principal: Annotated[Principal, Depends(require_roles("unit_member"))],
    runtime: RuntimeDep,
) -> ExtensionView:
    now = runtime.clock()
    calendar = current_calendar(runtime)
    async with runtime.transaction() as session:
        held = await _holder(session, case_id, principal, runtime.counties)
        if not principal.may_act_on("unit", held.unit_id):
            raise Problem(403, "Forbidden", "Only the unit holding the case may ask for more time.")
        clock = await latest_clock(session, case_id, body.kind)
        if clock is None:
            raise Problem(404, "Not Found", f"The case has no {body.kind} clock.")
        assert clock.id is not None
        pending = await session.scalar(
            select(DeadlineExtension.id).where(
                DeadlineExtension.deadline_id == clock.id,
                DeadlineExtension.status == "pending",
            )
        )
        try:
            requested, _ = requested_deadline(
                clock.due_at,
                requested_due_at=body.requested_due_at,
                extra_working_days=body.extra_working_days,
                calendar=calendar,
            )
            check_request(
                clock_status=clock.status,
                due_at=clock.due_at,
                requested=requested,
                now=now,
                pending=pending is not None,
            )
        except ExtensionConflict as exc:
            raise Problem(409, "Conflict", str(exc)) from exc
        except InvalidExtension as exc:
            raise Problem(422, "Unacceptable deadline", str(exc)) from exc
        row = DeadlineExtension(
            id=uuid4(),
            deadline_id=clock.id,
            case_id=case_id,
            kind=clock.kind,
            round=clock.round,
            due_at=clock.due_at,
            requested_due_at=requested,
            extra_working_days=body.extra_working_days,
            reason=body.reason,
            requested_by=principal.subject,
            requested_by_role="unit_member",
            requested_at=now,
        )
        session.add(row)
        payload = ExtensionRequested(
            case_id=case_id,
            request_id=row.id,
            kind=clock.kind,  # type: ignore[arg-type]
            round=clock.round,
            due_at=clock.due_at,
            requested_due_at=requested,
            reason=body.reason,
            requested_by=principal.subject,
            requested_by_role="unit_member",
        )
        stage(session, DEADLINES, await case_event(session, case_id, payload, now))
    return _view(row)


@router.post("/extensions/{request_id}/decision", response_model=ExtensionView)
async def decide_extension(
    request_id: UUID,
    body: DecisionIn,
    principal: Annotated[Principal, Depends(require_roles("dispatcher", "county_supervisor"))],
    runtime: RuntimeDep,
) -> ExtensionView:
    now = runtime.clock()
    calendar = current_calendar(runtime)
    async with runtime.transaction() as session:
        found = await session.get(DeadlineExtension, request_id)
        if found is None:
            raise Problem(404, "Not Found", f"No extension request {request_id}.")
        held = await _holder(session, found.case_id, principal, runtime.counties)
        role = _decider_role(principal, held)
        if role is None:
            raise Problem(
                403, "Forbidden", "Only the case's township command centre or the county decides."
            )
        # The clock first, as the scheduler and the clock stops lock it: then the request.
        clock = await session.get(CaseDeadline, found.deadline_id, with_for_update=True)
        assert clock is not None and clock.id is not None
        request = await session.get(
            DeadlineExtension, request_id, with_for_update=True, populate_existing=True
        )
        assert request is not None
        try:
            check_decision(
                request_status=request.status,
                approved=body.approved,
                clock_status=clock.status,
                due_at=clock.due_at,
                requested=request.requested_due_at,
                now=now,
            )
        except ExtensionConflict as exc:
            raise Problem(409, "Conflict", str(exc)) from exc
        old_due = clock.due_at
        if body.approved:
            await _move(session, clock, request, calendar, now)
        request.status = "approved" if body.approved else "refused"
        request.decided_by, request.decided_by_role = principal.subject, role
        request.decided_at, request.note = now, body.note
        payload = ExtensionDecided(
            case_id=request.case_id,
            request_id=request.id,
            kind=request.kind,  # type: ignore[arg-type]
            round=request.round,
            approved=body.approved,
            old_due_at=old_due,
            new_due_at=request.requested_due_at if body.approved else None,
            note=body.note,
            decided_by=principal.subject,
            decided_by_role=role,
        )
        stage(session, DEADLINES, await case_event(session, request.case_id, payload, now))
        if body.approved and clock.kind == "resolution":
            await follow_extension(
                session,
                payload,
                extra_working_days=request.extra_working_days,
                calendar=calendar,
                now=now,
                counties=runtime.counties,
            )
    return _view(request)


async def _move(
    session: AsyncSession,
    clock: CaseDeadline,
    request: DeadlineExtension,
    calendar: BusinessCalendar,
    now: datetime,
) -> None:
    """Move the locked clock to the granted deadline and give it a new ladder."""
    new_warn = moved_warning(
        due_at=clock.due_at,
        warn_at=clock.warn_at,
        new_due_at=request.requested_due_at,
        extra_working_days=request.extra_working_days,
        calendar=calendar,
    )
    if request.extra_working_days is not None:
        _, provisional = requested_deadline(
            request.due_at,
            requested_due_at=None,
            extra_working_days=request.extra_working_days,
            calendar=calendar,
        )
        clock.provisional_reason = provisional or clock.provisional_reason
    await move_clock(session, clock, due_at=request.requested_due_at, warn_at=new_warn, now=now)


@router.get("/cases/{case_id}/extensions", response_model=CaseExtensions)
async def case_extensions(
    case_id: UUID,
    principal: Annotated[
        Principal,
        Depends(require_roles("unit_member", "dispatcher", "county_supervisor", "auditor")),
    ],
    runtime: RuntimeDep,
) -> CaseExtensions:
    async with runtime.sessions() as session:
        held = await _assignment(session, case_id, principal, runtime.counties)
        # A case outside the caller's county, unit or township is answered like a missing one.
        if held is None or not _may_read(principal, held):
            raise Problem(404, "Not Found", f"No case {case_id} that you may see.")
        rows = (
            await session.scalars(
                select(DeadlineExtension)
                .where(DeadlineExtension.case_id == case_id)
                .order_by(DeadlineExtension.requested_at)  # type: ignore[arg-type]
            )
        ).all()
    return CaseExtensions(case_id=case_id, extensions=[_view(r) for r in rows])
