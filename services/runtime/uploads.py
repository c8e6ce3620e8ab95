"""Files received over HTTP and stored once by SHA-256: citizens' attachments (intake) and
officers' evidence for a case step (dispatch) go through this one module.

The type a client declares is never trusted: the first bytes decide (``filetype`` reads the
signatures), and only the kinds a phone or a scanner produces are kept. A file is written to a
temporary file as it arrives, counted against the size limit on the way, and renamed atomically
onto its content address ``<root>/ab/abcdef…`` once complete, so a reader never sees half a
file and the same bytes uploaded twice are one file.

The multipart body is parsed part by part (python-multipart), so a file over the limit or of a
refused kind is turned away as soon as that is known, without holding the file in memory:
:func:`receive_upload` is what an upload route calls.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filetype
from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from services.runtime.problems import INVALID_REQUEST, Problem

# What the sniffer reports → the type recorded. Images, voice notes (WeChat and phones record
# AMR and M4A/AAC), videos from phone cameras, and scanned documents (文书) as PDF.
ACCEPTED: dict[str, str] = {
    "image/jpeg": "image/jpeg",
    "image/png": "image/png",
    "image/webp": "image/webp",
    "image/heic": "image/heic",
    "audio/amr": "audio/amr",
    "audio/mpeg": "audio/mpeg",
    "audio/mp4": "audio/mp4",
    "audio/aac": "audio/aac",
    "audio/x-wav": "audio/wav",
    "video/mp4": "video/mp4",
    "video/quicktime": "video/quicktime",
}
# Officers also upload scanned legal documents (文书): a citizen's tip has no use for them.
DOCUMENTS: dict[str, str] = {"application/pdf": "application/pdf"}
# What an officer or a department may upload as evidence: all of it.
EVIDENCE_KINDS: dict[str, str] = {**ACCEPTED, **DOCUMENTS}
# filetype never looks further than this into a file.
SNIFF_BYTES = 8192

FIELD = b"file"
# Room for the multipart boundaries and part headers around the file itself.
ENVELOPE_BYTES = 16 * 1024


class UploadTooLarge(Exception):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"larger than {max_bytes} bytes")
        self.max_bytes = max_bytes


class UnsupportedUpload(Exception):
    """The bytes are not of an accepted kind."""


def sniff(head: bytes, accepted: dict[str, str] = ACCEPTED) -> str | None:
    """The accepted content type of a file starting with ``head``, or None."""
    kind = filetype.guess(head)
    return accepted.get(kind.mime) if kind is not None else None


def content_path(root: Path, sha256: str) -> Path:
    return root / sha256[:2] / sha256


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    content_type: str
    size: int


class Upload:
    """One file being received: hashed, counted and written to a temporary file under
    ``root`` as its bytes arrive. Blocking file I/O: call from a worker thread."""

    def __init__(self, root: Path, max_bytes: int, accepted: dict[str, str] = ACCEPTED) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._accepted = accepted
        spool = root / "tmp"
        spool.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=spool, prefix="upload-")
        self._path = Path(name)
        self._file = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._head = bytearray()
        self.size = 0
        self.content_type: str | None = None

    def write(self, chunks: Iterable[bytes]) -> None:
        """Take the next bytes; UploadTooLarge or UnsupportedUpload as soon as either is
        known."""
        for chunk in chunks:
            self.size += len(chunk)
            if self.size > self._max_bytes:
                raise UploadTooLarge(self._max_bytes)
            if self.content_type is None:
                self._head += chunk[: SNIFF_BYTES - len(self._head)]
                if len(self._head) >= SNIFF_BYTES:
                    self._decide()
            self._hash.update(chunk)
            self._file.write(chunk)

    def _decide(self) -> None:
        content_type = sniff(bytes(self._head), self._accepted)
        if content_type is None:
            raise UnsupportedUpload()
        self.content_type = content_type

    def finish(self) -> StoredFile:
        """Move the complete file onto its content address (one copy per content)."""
        if self.content_type is None:
            self._decide()
        assert self.content_type is not None
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        sha256 = self._hash.hexdigest()
        target = content_path(self._root, sha256)
        if target.exists():
            self._path.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path, target)
            _sync_directory(target.parent)
        return StoredFile(sha256, self.content_type, self.size)

    def discard(self) -> None:
        self._file.close()
        self._path.unlink(missing_ok=True)


def _sync_directory(path: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def not_stored(cited: Sequence[str], stored: Collection[str]) -> list[str]:
    """The rule every step citing evidence is held to: the hashes among ``cited`` that name no
    file stored for it, in the order cited, each once (empty: the step may cite them all)."""
    return [h for h in dict.fromkeys(cited) if h not in stored]


# ---------------------------------------------------------------- over HTTP


def too_large(max_bytes: int) -> Problem:
    megabytes = max_bytes // (1024 * 1024)
    return Problem(413, "Content Too Large", f"文件过大：最大 {megabytes} MB。")


def unsupported(accepted: dict[str, str]) -> Problem:
    kinds = "照片（JPEG、PNG、WebP、HEIC）、录音（AMR、MP3、M4A、AAC、WAV）或视频（MP4、MOV）"
    if "application/pdf" in accepted:
        kinds += "，或扫描的文书（PDF）"
    return Problem(415, "Unsupported Media Type", f"不支持的文件类型：请上传{kinds}。")


def _invalid(detail: str) -> Problem:
    return Problem(422, "Invalid request", detail, type_=INVALID_REQUEST)


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


async def receive_upload(
    request: Request, root: Path, max_bytes: int, accepted: dict[str, str] = ACCEPTED
) -> StoredFile:
    """The one file of the request's ``multipart/form-data`` body (field ``file``), stored
    under ``root``; a problem (413, 415, 422) for a body too large, of a refused kind or
    malformed, and then nothing is kept."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise Problem(
            415, "Unsupported Media Type", "Upload the file as multipart/form-data, field 'file'."
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes + ENVELOPE_BYTES:
        raise too_large(max_bytes)
    upload = await asyncio.to_thread(Upload, root, max_bytes, accepted)
    try:
        return await _receive(request, boundary, upload)
    except UploadTooLarge as exc:
        raise too_large(exc.max_bytes) from exc
    except UnsupportedUpload as exc:
        raise unsupported(accepted) from exc
    finally:
        await asyncio.to_thread(upload.discard)


MULTIPART_BODY: dict[str, Any] = {
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
}
"""The OpenAPI description of an upload's body, for ``openapi_extra``."""

EVIDENCE_REFUSALS: dict[int | str, dict[str, Any]] = {
    413: {"description": "larger than WHISTLE_EVIDENCE_MAX_BYTES"},
    415: {"description": "not an accepted image, recording, video or PDF"},
}
"""The OpenAPI description of an evidence upload's refusals (:func:`too_large`,
:func:`unsupported` with ``EVIDENCE_KINDS``), for a route's ``responses``."""
