"""``POST /v1/attachments``: one file in a multipart form, read as it streams in.

The body is parsed part by part (python-multipart), so a file over the limit or of a refused
kind is turned away as soon as that is known, without holding the file in memory. A tip then
references the file by the ``id`` answered here (its SHA-256).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.intake import channels
from services.intake.attachments import StoredFile, Upload
from services.intake.edges import ProblemRoute, RuntimeDep, client_address
from services.intake.errors import AttachmentTooLarge
from services.runtime.limits import own_body_limit
from services.runtime.problems import Problem

router = APIRouter(prefix="/v1", tags=["attachments"], route_class=ProblemRoute)

FIELD = b"file"
# Room for the multipart boundaries and part headers around the file itself.
ENVELOPE_BYTES = 16 * 1024


class AttachmentStored(BaseModel):
    id: str
    content_type: str
    size: int


class _Form:
    """Follows python-multipart's callbacks: which part is the file, and its bytes so far."""

    def __init__(self) -> None:
        self.files = 0
        self.ended = False
        self.pending: list[bytes] = []
        self._in_file = False
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._in_file = options.get(b"name") == FIELD
        self.files += self._in_file

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.pending.append(bytes(data[start:end]))

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.ended = True


def _invalid(detail: str) -> Problem:
    return Problem(
        422, "Invalid request", detail, type_="https://whistle.example/problems/invalid-request"
    )


async def _receive(request: Request, boundary: bytes, upload: Upload) -> StoredFile:
    form = _Form()
    parser = MultipartParser(boundary, form.callbacks())
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if form.files > 1:
                raise _invalid("Send one file per request, in the form field 'file'.")
            if form.pending:
                chunks, form.pending = form.pending, []
                await asyncio.to_thread(upload.write, chunks)
        parser.finalize()
    except MultipartParseError as exc:
        raise _invalid(f"The multipart body is malformed: {exc}") from exc
    if not form.ended:
        raise _invalid("The multipart body ends before its closing boundary.")
    if form.files == 0:
        raise _invalid("The form has no field 'file'.")
    return await asyncio.to_thread(upload.finish)


@router.post(
    "/attachments",
    status_code=201,
    response_model=AttachmentStored,
    responses={
        200: {"description": "the same bytes were stored before: the same id"},
        413: {"description": "larger than WHISTLE_ATTACHMENT_MAX_BYTES"},
        415: {"description": "not an accepted image, recording or video"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
)
@own_body_limit
async def upload_attachment(
    request: Request, runtime: RuntimeDep, response: Response
) -> AttachmentStored:
    settings = runtime.settings
    await channels.within_upload_limits(runtime, client_address(request))
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise Problem(
            415, "Unsupported Media Type", "Upload the file as multipart/form-data, field 'file'."
        )
    max_bytes = settings.attachment_max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + ENVELOPE_BYTES:
        raise AttachmentTooLarge(max_bytes)
    upload = await asyncio.to_thread(Upload, settings.attachments_path, max_bytes)
    try:
        stored = await _receive(request, boundary, upload)
    finally:
        await asyncio.to_thread(upload.discard)
    row, created = await channels.keep_upload(runtime, stored)
    response.status_code = 201 if created else 200
    return AttachmentStored(id=row.sha256, content_type=row.content_type, size=row.size)
