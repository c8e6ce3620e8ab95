"""The whistle protocol's HTTP API (吹哨报到) and the department page that uses it.

A county department (role ``county_department``, scope ``dept:<code>``) reports in and replies
for its own department only; a county supervisor sees every department's whistles — all within
the token's counties: another county's whistle is a missing one (404). The rules
and the recording are in ``services/escalation/whistle_protocol.py``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import Sha256, WhistleReplied, WhistleReported
from reference.county import Code
from services.escalation.counties import of_readers_counties
from services.escalation.models import CaseDeadline, WhistleSummons
from services.escalation.whistle_protocol import (
    AlreadyRecorded,
    NotSummoned,
    ReceiptRequired,
    SubmissionRefused,
    UnknownEvidence,
    UnknownWhistle,
    WhistleStatus,
    keep_evidence,
    record_receipt,
    record_reply,
    summoned_departments,
    whistle_status,
)
from services.runtime import pages
from services.runtime.auth import Principal, require_roles
from services.runtime.limits import own_body_limit
from services.runtime.problems import Problem
from services.runtime.service import Runtime, RuntimeDep
from services.runtime.uploads import (
    EVIDENCE_KINDS,
    EVIDENCE_REFUSALS,
    MULTIPART_BODY,
    receive_upload,
)

router = APIRouter(prefix="/v1", tags=["whistles"])
DepartmentCaller = Annotated[Principal, Depends(require_roles("county_department"))]
Reader = Annotated[
    Principal,
    Depends(
        require_roles("county_department", "county_supervisor", "township_leader", "dispatcher")
    ),
]
# A township's leader and dispatcher read the whistles their township blew: the overdue ones
# are what a township refers to its joint meeting (联席会议, meeting_api.py).
TOWNSHIP_READERS = frozenset({"township_leader", "dispatcher"})

PROBLEM = "https://whistle.example/problems/"


class ReceiptIn(BaseModel):
    receipt_no: str = Field(min_length=1, max_length=64, description="the department's 回执号")
    officer: str | None = Field(default=None, max_length=200)
    department_code: str | None = Field(
        default=None, description="only for a caller acting for several summoned departments"
    )


class ReplyIn(BaseModel):
    result: str = Field(min_length=1, max_length=4000)
    evidence: list[Sha256] = Field(
        default_factory=list,
        description="SHA-256 of each file uploaded for this whistle (POST …/evidence)",
    )
    officer: str | None = Field(default=None, max_length=200)
    department_code: str | None = None


class ClockView(BaseModel):
    due_at: datetime
    status: str  # running, met, late, lapsed (the case closed first)
    stopped_at: datetime | None
    provisional: bool = Field(
        description="counted Monday to Friday in a year the calendar lacks; counted again "
        "once the year is added"
    )


class WhistleView(BaseModel):
    whistle_id: UUID
    case_id: UUID
    department_code: str
    township_code: str | None
    matter_code: str | None
    reason_code: str
    reason: str
    urgency: str
    notified_at: datetime
    status: WhistleStatus
    receipt: ClockView
    reply: ClockView
    receipt_no: str | None
    reported_at: datetime | None
    result: str | None
    replied_at: datetime | None


class WhistleList(BaseModel):
    whistles: list[WhistleView]


@router.post("/whistles/{whistle_id}/receipt", status_code=201, response_model=WhistleReported)
async def report_in(
    whistle_id: UUID, body: ReceiptIn, caller: DepartmentCaller, runtime: RuntimeDep
) -> WhistleReported:
    async with runtime.transaction() as session:
        department = _acting_for(
            caller, await _summoned(session, caller, runtime, whistle_id), body.department_code
        )
        try:
            return await record_receipt(
                session,
                whistle_id=whistle_id,
                department_code=department,
                receipt_no=body.receipt_no,
                actor=body.officer or caller.subject,
                via="http",
                now=runtime.clock(),
            )
        except SubmissionRefused as exc:
            raise _refused(exc) from exc


@router.post("/whistles/{whistle_id}/reply", status_code=201, response_model=WhistleReplied)
async def reply(
    whistle_id: UUID, body: ReplyIn, caller: DepartmentCaller, runtime: RuntimeDep
) -> WhistleReplied:
    async with runtime.transaction() as session:
        department = _acting_for(
            caller, await _summoned(session, caller, runtime, whistle_id), body.department_code
        )
        try:
            return await record_reply(
                session,
                whistle_id=whistle_id,
                department_code=department,
                result=body.result,
                evidence=list(body.evidence),
                actor=body.officer or caller.subject,
                via="http",
                now=runtime.clock(),
            )
        except SubmissionRefused as exc:
            raise _refused(exc) from exc


class EvidenceStored(BaseModel):
    id: str
    content_type: str
    size: int
    department_code: str


@router.post(
    "/whistles/{whistle_id}/evidence",
    status_code=201,
    response_model=EvidenceStored,
    responses={
        200: {"description": "the same bytes were uploaded for this whistle before"},
        **EVIDENCE_REFUSALS,
    },
    openapi_extra=MULTIPART_BODY,
)
@own_body_limit
async def upload_evidence(
    whistle_id: UUID,
    request: Request,
    caller: DepartmentCaller,
    runtime: RuntimeDep,
    response: Response,
    department_code: Annotated[Code | None, Query()] = None,
) -> EvidenceStored:
    """A file for the department's reply (photos, scanned 文书), stored by SHA-256 with the
    shared upload helper; the reply cites it by the ``id`` answered, and only such files."""
    # Who may upload is settled before the bytes are read: a refused caller stores nothing.
    async with runtime.sessions() as session:
        department = _acting_for(
            caller, await _summoned(session, caller, runtime, whistle_id), department_code
        )
    settings = runtime.settings
    stored = await receive_upload(
        request, settings.evidence_path / "whistles", settings.evidence_max_bytes, EVIDENCE_KINDS
    )
    async with runtime.transaction() as session:
        try:
            row, created = await keep_evidence(
                session,
                whistle_id=whistle_id,
                department_code=department,
                stored=stored,
                by=caller.subject,
                now=runtime.clock(),
            )
        except SubmissionRefused as exc:
            raise _refused(exc) from exc
    response.status_code = 201 if created else 200
    return EvidenceStored(
        id=row.sha256, content_type=row.content_type, size=row.size, department_code=department
    )


@router.get("/whistles", response_model=WhistleList)
async def list_whistles(
    caller: Reader,
    runtime: RuntimeDep,
    department: Annotated[Code | None, Query(description="a department code")] = None,
    state: Annotated[Literal["open", "overdue"], Query()] = "open",
    township: Annotated[Code | None, Query(description="the township that blew them")] = None,
) -> WhistleList:
    """A department's open whistles (not yet replied to, case not closed), or only the overdue
    ones; a township's leader or dispatcher, those its township blew."""
    query = select(WhistleSummons).where(
        WhistleSummons.replied_at.is_(None),  # type: ignore[union-attr]
        of_readers_counties(WhistleSummons.case_id, caller, runtime.counties),
    )
    if township is not None:
        query = query.where(WhistleSummons.township_code == township)
    if caller.roles & TOWNSHIP_READERS and not caller.roles & {
        "county_department",
        "county_supervisor",
    }:
        if township is not None and not caller.may_act_on("township", township):
            raise Problem(
                403,
                "无权查看",
                f"该令牌不代表乡镇 {township}。",
                type_=PROBLEM + "other-township",
            )
        if "township:*" not in caller.scopes:
            own = [s.removeprefix("township:") for s in caller.scopes if s.startswith("township:")]
            query = query.where(WhistleSummons.township_code.in_(own))  # type: ignore[union-attr]
    elif department is not None and not _may_see(caller, department):
        raise Problem(
            403,
            "Forbidden",
            f"This token does not act for department {department}.",
            type_=PROBLEM + "other-department",
        )
    if department is not None:
        query = query.where(WhistleSummons.department_code == department)
    elif not caller.roles & ({"county_supervisor"} | TOWNSHIP_READERS):
        own = _own_departments(caller)
        if own is not None:
            query = query.where(WhistleSummons.department_code.in_(own))  # type: ignore[attr-defined]
    now = runtime.clock()
    async with runtime.sessions() as session:
        summonses = (await session.scalars(query.order_by(WhistleSummons.notified_at))).all()
        clocks = await _clocks(session, [s.whistle_id for s in summonses])
    # A whistle whose case closed before the department replied has lapsed: it is not open.
    views = [
        _view(s, clocks, now)
        for s in summonses
        if clocks[(s.whistle_id, s.department_code, "whistle_reply")].status == "running"
    ]
    if state == "overdue":
        views = [v for v in views if v.status.endswith("_overdue")]
    return WhistleList(whistles=views)


async def _summoned(
    session: AsyncSession, caller: Principal, runtime: Runtime, whistle_id: UUID
) -> list[str]:
    """The departments the whistle summoned; none (a missing whistle) if its case is another
    county's than the caller's: departments of two counties share their codes."""
    visible = await session.scalar(
        select(WhistleSummons.whistle_id)
        .where(
            WhistleSummons.whistle_id == whistle_id,  # type: ignore[arg-type]
            of_readers_counties(WhistleSummons.case_id, caller, runtime.counties),
        )
        .limit(1)
    )
    return await summoned_departments(session, whistle_id) if visible else []


def _acting_for(caller: Principal, summoned: list[str], department_code: str | None) -> str:
    """The summoned department the caller answers for."""
    if not summoned:
        raise Problem(404, "Not Found", "There is no such whistle.", type_=PROBLEM + "no-whistle")
    mine = [d for d in summoned if caller.may_act_on("dept", d)]
    if department_code is not None:
        mine = [d for d in mine if d == department_code]
    if not mine:
        raise Problem(
            403,
            "Forbidden",
            "This whistle did not summon a department this token acts for.",
            type_=PROBLEM + "other-department",
        )
    if len(mine) > 1:
        raise Problem(
            422,
            "Department required",
            f"This token acts for several summoned departments ({', '.join(mine)}): "
            "name one in department_code.",
            type_=PROBLEM + "department-required",
        )
    return mine[0]


def _refused(exc: SubmissionRefused) -> Problem:
    if isinstance(exc, UnknownWhistle):
        return Problem(404, "Not Found", str(exc), type_=PROBLEM + "no-whistle")
    if isinstance(exc, NotSummoned):
        return Problem(403, "Forbidden", str(exc), type_=PROBLEM + "other-department")
    if isinstance(exc, AlreadyRecorded):
        return Problem(409, "Already recorded", str(exc), type_=PROBLEM + "already-recorded")
    if isinstance(exc, UnknownEvidence):
        return Problem(
            422,
            "证据文件不存在",
            f"以下证据文件未上传到本次吹哨：{'、'.join(exc.ids)}。请先上传证据"
            "（POST /v1/whistles/{id}/evidence），再提交回复；本次回复未保存。",
            type_=PROBLEM + "unknown-evidence",
            unknown=exc.ids,
        )
    assert isinstance(exc, ReceiptRequired)
    return Problem(409, "Receipt required", str(exc), type_=PROBLEM + "receipt-required")


def _may_see(caller: Principal, department: str) -> bool:
    return "county_supervisor" in caller.roles or caller.may_act_on("dept", department)


def _own_departments(caller: Principal) -> list[str] | None:
    """The departments a department token acts for; None for ``dept:*``."""
    if "dept:*" in caller.scopes:
        return None
    return [s.removeprefix("dept:") for s in caller.scopes if s.startswith("dept:")]


async def _clocks(
    session: AsyncSession, whistle_ids: list[UUID]
) -> dict[tuple[UUID, str, str], CaseDeadline]:
    """Each summoned department's latest clock of each kind."""
    if not whistle_ids:
        return {}
    rows = (
        await session.scalars(
            select(CaseDeadline)
            .where(CaseDeadline.whistle_id.in_(whistle_ids))  # type: ignore[union-attr]
            .order_by(CaseDeadline.round)  # type: ignore[arg-type]
        )
    ).all()
    return {(r.whistle_id, r.department_code, r.kind): r for r in rows}  # type: ignore[misc]


def _view(
    summons: WhistleSummons, clocks: dict[tuple[UUID, str, str], CaseDeadline], now: datetime
) -> WhistleView:
    key = (summons.whistle_id, summons.department_code)
    receipt, reply_clock = clocks[(*key, "whistle_receipt")], clocks[(*key, "whistle_reply")]
    return WhistleView(
        whistle_id=summons.whistle_id,
        case_id=summons.case_id,
        department_code=summons.department_code,
        township_code=summons.township_code,
        matter_code=summons.matter_code,
        reason_code=summons.reason_code,
        reason=summons.reason,
        urgency=summons.urgency,
        notified_at=summons.notified_at,
        status=whistle_status(
            reported=summons.reported_at is not None,
            replied=summons.replied_at is not None,
            receipt_due_at=receipt.due_at,
            reply_due_at=reply_clock.due_at,
            now=now,
        ),
        receipt=_clock_view(receipt),
        reply=_clock_view(reply_clock),
        receipt_no=summons.receipt_no,
        reported_at=summons.reported_at,
        result=summons.result,
        replied_at=summons.replied_at,
    )


def _clock_view(clock: CaseDeadline) -> ClockView:
    return ClockView(
        due_at=clock.due_at,
        status=clock.status,
        stopped_at=clock.stopped_at,
        provisional=clock.provisional_reason is not None,
    )


# --- the department page (部门吹哨报到) ------------------------------------------------------

# The department page also refers matters to townships (移送), which is dispatch's: its script
# may call dispatch's origin, and learns it from GET /v1/referral-target.
page_router = pages.page_router(
    "dept",
    "/dept",
    Path(__file__).with_name("static"),
    connect_to=lambda settings: settings.dispatch_origin,
    shared=("pages",),
)


class ReferralTarget(BaseModel):
    url: str = Field(description="where the department page sends POST /v1/referrals")


@router.get("/referral-target", response_model=ReferralTarget, include_in_schema=False)
async def referral_target(runtime: RuntimeDep) -> ReferralTarget:
    """Where browsers reach dispatch's referrals (WHISTLE_DISPATCH_PUBLIC_ORIGIN)."""
    return ReferralTarget(url=f"{runtime.settings.dispatch_origin}/v1/referrals")
