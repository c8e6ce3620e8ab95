"""``POST /v1/attachments``: one file in a multipart form, read as it streams in.

The body is received by the shared upload helper (services/runtime/uploads.py), so a file over
the limit or of a refused kind is turned away as soon as that is known, without holding the
file in memory. A tip then references the file by the ``id`` answered here (its SHA-256).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from services.intake import channels
from services.intake.edges import ProblemRoute, client_address
from services.runtime.limits import own_body_limit
from services.runtime.service import RuntimeDep
from services.runtime.uploads import MULTIPART_BODY, receive_upload

router = APIRouter(prefix="/v1", tags=["attachments"], route_class=ProblemRoute)


class AttachmentStored(BaseModel):
    id: str
    content_type: str
    size: int


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentStored,
    responses={
        200: {"description": "the same bytes were stored before: the same id"},
        413: {"description": "larger than WHISTLE_ATTACHMENT_MAX_BYTES"},
        415: {"description": "not an accepted image, recording or video"},
    },
    openapi_extra=MULTIPART_BODY,
)
@own_body_limit
async def upload_attachment(
    request: Request, runtime: RuntimeDep, response: Response
) -> AttachmentStored:
    settings = runtime.settings
    await channels.within_upload_limits(runtime, client_address(request))
    stored = await receive_upload(request, settings.attachments_path, settings.attachment_max_bytes)
    row, created = await channels.keep_upload(runtime, stored)
    response.status_code = 201 if created else 200
    return AttachmentStored(id=row.sha256, content_type=row.content_type, size=row.size)
