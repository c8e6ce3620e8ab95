"""Evidence for a case's steps: officers upload photos, video and scanned 文书 here, then cite
them by SHA-256 in progress, resolution and penalty decisions (which refuse any other hash).

``POST /v1/cases/{id}/evidence`` takes one file in a multipart form, received by the shared
upload helper (services/runtime/uploads.py: sniffed type, size limit, atomic rename onto the
content address under ``WHISTLE_EVIDENCE_DIR``); ``GET`` lists a case's evidence and serves a
file to whoever may read the case.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from services.dispatch import evidence
from services.dispatch.cases import find_case, may_add_evidence
from services.dispatch.dependencies import CaseReader, changing, reading
from services.dispatch.models import CaseEvidence
from services.runtime.auth import Principal, require_roles
from services.runtime.limits import own_body_limit
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep
from services.runtime.uploads import (
    EVIDENCE_KINDS,
    EVIDENCE_REFUSALS,
    MULTIPART_BODY,
    content_path,
    receive_upload,
)

router = APIRouter(prefix="/v1", tags=["evidence"])

# Whoever may act on a case, a supporting unit's members included.
Uploader = Annotated[
    Principal, Depends(require_roles("dispatcher", "unit_member", "county_supervisor"))
]
Sha256Path = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]


class EvidenceView(BaseModel):
    id: str
    content_type: str
    size: int
    uploaded_by: str
    uploaded_at: datetime


def _view(row: CaseEvidence) -> EvidenceView:
    return EvidenceView(
        id=row.sha256,
        content_type=row.content_type,
        size=row.size,
        uploaded_by=row.uploaded_by,
        uploaded_at=row.uploaded_at,
    )


@router.post(
    "/cases/{case_id}/evidence",
    status_code=201,
    response_model=EvidenceView,
    responses={
        200: {"description": "the same bytes were uploaded for this case before: the same id"},
        **EVIDENCE_REFUSALS,
    },
    openapi_extra=MULTIPART_BODY,
)
@own_body_limit
async def upload_evidence(
    case_id: UUID, request: Request, principal: Uploader, runtime: RuntimeDep, response: Response
) -> EvidenceView:
    """Store one file as evidence of the case; a step then cites it by the ``id`` answered."""
    # Who may upload is asked before the bytes are read: a refused caller stores nothing.
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
    if not may_add_evidence(principal, case):
        raise Problem(403, "Forbidden", "您可以查看本案，但不能为本案上传证据。")
    settings = runtime.settings
    stored = await receive_upload(
        request, settings.evidence_path, settings.evidence_max_bytes, EVIDENCE_KINDS
    )
    async with changing(runtime) as cases:
        row, created = await cases.add_evidence(principal, case_id, stored)
    response.status_code = 201 if created else 200
    return _view(row)


@router.get("/cases/{case_id}/evidence", response_model=list[EvidenceView])
async def list_evidence(
    case_id: UUID, principal: CaseReader, runtime: RuntimeDep
) -> list[EvidenceView]:
    """The files uploaded as evidence of the case, oldest first."""
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
        return [_view(row) for row in await evidence.of_case(session, case.id)]


@router.get(
    "/cases/{case_id}/evidence/{sha256}",
    response_class=FileResponse,
    responses={200: {"description": "the file, with its sniffed content type"}},
)
async def get_evidence(
    case_id: UUID, sha256: Sha256Path, principal: CaseReader, runtime: RuntimeDep
) -> FileResponse:
    """One evidence file of the case, for whoever may read the case."""
    async with reading(runtime) as session:
        case = await find_case(session, principal, case_id)
        row = await session.get(CaseEvidence, (case.id, sha256))
    path = content_path(runtime.settings.evidence_path, sha256)
    if row is None or not path.exists():
        raise Problem(404, "Not Found", f"本案没有证据文件 {sha256}。")
    return FileResponse(path, media_type=row.content_type, filename=f"{sha256[:12]}")
