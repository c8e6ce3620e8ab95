"""Citizens' photos, recordings and videos: typed by their bytes, stored once by SHA-256.

The type a client declares is never trusted: the first bytes decide (``filetype`` reads the
signatures), and only the kinds a phone produces are kept. A file is written to a temporary
file as it arrives, counted against the size limit on the way, and renamed atomically onto its
content address ``<root>/ab/abcdef…`` once complete, so a reader never sees half a file and the
same bytes uploaded twice are one file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import filetype
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.errors import AttachmentTooLarge, UnsupportedAttachment
from services.intake.models import Attachment

# What the sniffer reports → the type recorded. Images, voice notes (WeChat and phones record
# AMR and M4A/AAC), and videos from phone cameras.
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
# filetype never looks further than this into a file.
SNIFF_BYTES = 8192


def sniff(head: bytes) -> str | None:
    """The accepted content type of a file starting with ``head``, or None."""
    kind = filetype.guess(head)
    return ACCEPTED.get(kind.mime) if kind is not None else None


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

    def __init__(self, root: Path, max_bytes: int) -> None:
        self._root = root
        self._max_bytes = max_bytes
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
        """Take the next bytes; AttachmentTooLarge or UnsupportedAttachment as soon as either
        is known."""
        for chunk in chunks:
            self.size += len(chunk)
            if self.size > self._max_bytes:
                raise AttachmentTooLarge(self._max_bytes)
            if self.content_type is None:
                self._head += chunk[: SNIFF_BYTES - len(self._head)]
                if len(self._head) >= SNIFF_BYTES:
                    self._decide()
            self._hash.update(chunk)
            self._file.write(chunk)

    def _decide(self) -> None:
        content_type = sniff(bytes(self._head))
        if content_type is None:
            raise UnsupportedAttachment()
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


async def record(
    session: AsyncSession, stored: StoredFile, now: datetime
) -> tuple[Attachment, bool]:
    """The attachment's row, and whether this upload created it (False: the same bytes were
    stored before, and the first row stands)."""
    created = await session.scalar(
        insert(Attachment)
        .values(
            sha256=stored.sha256,
            content_type=stored.content_type,
            size=stored.size,
            stored_at=now,
        )
        .on_conflict_do_nothing(index_elements=["sha256"])
        .returning(Attachment.sha256)  # type: ignore[arg-type]
    )
    row = await session.get(Attachment, stored.sha256)
    assert row is not None
    return row, created is not None


async def unknown(session: AsyncSession, ids: Sequence[str]) -> list[str]:
    """The ids among ``ids`` that name no stored attachment, in the order given."""
    if not ids:
        return []
    known = set(
        await session.scalars(
            select(Attachment.sha256).where(Attachment.sha256.in_(ids))  # type: ignore[attr-defined]
        )
    )
    return [i for i in ids if i not in known]
