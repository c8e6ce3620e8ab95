"""``POST /v1/attachments`` over real HTTP (uvicorn on a loopback port): types sniffed from the
bytes, a size limit enforced while the body streams in, one file per content, and tips that may
only reference what was stored."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from services.intake.app import create_app
from services.intake.models import Attachment, Tip
from services.runtime.outbox import OutboxMessage
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from services.runtime.uploads import content_path
from tests.support.files import png
from tests.support.serving import serving

PROBLEM = "application/problem+json"
MAX_BYTES = 256 * 1024


@dataclass(frozen=True)
class Served:
    client: httpx.AsyncClient
    runtime: Runtime
    root: Path


async def serve(app: object) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port, for as long as the caller iterates."""
    async with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
async def served(
    migrated: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Served]:
    root = tmp_path_factory.mktemp("attachments")
    own = migrated.model_copy(
        update={
            "attachments_dir": root,
            "attachment_max_bytes": MAX_BYTES,
            "rate_limit_attachments_per_address_per_hour": 100_000,
        }
    )
    app = create_app(own)
    async for url in serve(app):
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            yield Served(client, app.state.runtime, root)


def stored_files(root: Path) -> Iterator[Path]:
    """Every file kept under the attachments root, in-flight temporary files included."""
    return (p for p in root.rglob("*") if p.is_file())


async def rows(runtime: Runtime, sha256: str | None = None) -> int:
    async with runtime.sessions() as session:
        query = select(func.count()).select_from(Attachment)
        if sha256 is not None:
            query = query.where(Attachment.sha256 == sha256)
        return int(await session.scalar(query) or 0)


async def upload(
    served: Served, data: bytes, declared: str = "application/octet-stream", name: str = "f"
) -> httpx.Response:
    return await served.client.post("/v1/attachments", files={"file": (name, data, declared)})


async def test_png_bytes_declared_as_video_are_stored_as_a_png(served: Served) -> None:
    data = png(1)
    answer = await upload(served, data, "video/mp4", "clip.mp4")
    assert answer.status_code == 201, answer.text
    digest = hashlib.sha256(data).hexdigest()
    assert answer.json() == {"id": digest, "content_type": "image/png", "size": len(data)}
    assert content_path(served.root, digest).read_bytes() == data
    async with served.runtime.sessions() as session:
        row = await session.get(Attachment, digest)
    assert row is not None and (row.content_type, row.size) == ("image/png", len(data))


async def test_text_declared_as_a_jpeg_is_refused_and_nothing_is_kept(served: Served) -> None:
    before = set(stored_files(served.root))
    count = await rows(served.runtime)
    answer = await upload(served, "村口有人占道摆摊".encode() * 50, "image/jpeg", "photo.jpg")
    assert answer.status_code == 415 and answer.headers["content-type"] == PROBLEM
    assert "不支持的文件类型" in answer.json()["detail"]
    assert set(stored_files(served.root)) == before
    assert await rows(served.runtime) == count


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        (b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "image/heic"),
        (b"#!AMR\n", "audio/amr"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom", "audio/mp4"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "audio/wav"),
        (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41", "video/mp4"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "video/quicktime"),
    ],
)
async def test_photos_recordings_and_videos_are_recognised_by_their_bytes(
    served: Served, head: bytes, content_type: str
) -> None:
    answer = await upload(served, head + bytes(64) + content_type.encode())
    assert answer.status_code == 201, answer.text
    assert answer.json()["content_type"] == content_type


async def test_the_same_bytes_twice_are_one_file_with_one_id(served: Served) -> None:
    data = png(2)
    first = await upload(served, data, "image/png", "a.png")
    again = await upload(served, data, "image/jpeg", "b.jpg")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    digest = first.json()["id"]
    assert [p.name for p in stored_files(served.root)].count(digest) == 1
    assert await rows(served.runtime, digest) == 1
    assert not list((served.root / "tmp").iterdir())


async def test_an_oversized_file_is_refused_while_it_streams_and_nothing_is_kept(
    served: Served,
) -> None:
    before = set(stored_files(served.root))
    count = await rows(served.runtime)
    too_big = png(3) + bytes(MAX_BYTES)
    # Declared too long: refused before a byte of the body is read.
    declared = await upload(served, too_big, "image/png")
    assert declared.status_code == 413 and declared.headers["content-type"] == PROBLEM
    assert "文件过大" in declared.json()["detail"]

    # Chunked, with no length to go by: refused once the count passes the limit.
    boundary = "whistle-test-boundary"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"'
            "\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        for start in range(0, len(too_big), 32 * 1024):
            yield too_big[start : start + 32 * 1024]
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = await served.client.post(
        "/v1/attachments",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert streamed.status_code == 413, streamed.text
    assert set(stored_files(served.root)) == before
    assert await rows(served.runtime) == count


async def test_a_request_that_is_not_one_file_gets_a_specific_problem(served: Served) -> None:
    as_json = await served.client.post("/v1/attachments", json={"file": "abc"})
    assert as_json.status_code == 415 and as_json.headers["content-type"] == PROBLEM
    wrong_field = await served.client.post(
        "/v1/attachments", files={"photo": ("a.png", png(4), "image/png")}
    )
    assert wrong_field.status_code == 422 and "'file'" in wrong_field.json()["detail"]
    two = await served.client.post(
        "/v1/attachments",
        files=[("file", ("a.png", png(5), "image/png")), ("file", ("b.png", png(6), "image/png"))],
    )
    assert two.status_code == 422 and "one file" in two.json()["detail"]
    empty = await upload(served, b"", "image/png")
    assert empty.status_code == 415
    assert await rows(served.runtime, hashlib.sha256(png(6)).hexdigest()) == 0


async def test_a_tip_may_reference_only_stored_attachments(served: Served) -> None:
    photo = (await upload(served, png(7), "image/png")).json()["id"]
    unknown = "ef" * 32
    tip = {"text": "河道里有人倾倒建筑垃圾", "address": "城关镇五里铺村河边"}
    refused = await served.client.post("/v1/tips", json={**tip, "attachments": [photo, unknown]})
    assert refused.status_code == 422 and refused.headers["content-type"] == PROBLEM
    assert refused.json()["unknown"] == [unknown]
    async with served.runtime.sessions() as session:
        saved = await session.scalar(select(func.count()).where(Tip.text == tip["text"]))
    assert saved == 0

    accepted = await served.client.post("/v1/tips", json={**tip, "attachments": [photo]})
    assert accepted.status_code == 201, accepted.text
    tip_id = accepted.json()["tip_id"]
    async with served.runtime.sessions() as session:
        event = await session.scalar(select(OutboxMessage.event).where(OutboxMessage.key == tip_id))
    assert event is not None and event["data"]["attachments"] == [photo]
