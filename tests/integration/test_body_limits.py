"""Request bodies are limited before they are read into memory (services/runtime/limits.py):
64 KiB by default, refused with 413 problem+json whether the size is declared or streamed;
uploads keep their own, larger, streaming limit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.files import png

# What the services under test run with: the setting's default.
LIMIT = Settings.model_fields["request_body_max_bytes"].default

Service = tuple[httpx.AsyncClient, Runtime]

TIP = {"text": "路灯不亮，晚上很危险", "address": "城关镇人民路1号", "anonymous": True}


def padded(document: dict[str, object], size: int) -> bytes:
    """A valid JSON document of ``size`` bytes: the document, then whitespace."""
    body = json.dumps(document, ensure_ascii=False).encode()
    return body + b" " * (size - len(body))


def assert_too_large(answer: httpx.Response) -> None:
    assert answer.status_code == 413, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json()["title"] == "Content Too Large"


async def test_a_declared_body_over_the_limit_is_refused(intake: Service) -> None:
    http, _ = intake
    body = padded(TIP, 30 * 1024 * 1024)
    answer = await http.post("/v1/tips", content=body, headers={"content-type": "application/json"})
    assert_too_large(answer)


async def test_a_body_just_over_the_limit_is_refused_and_one_within_is_taken(
    intake: Service,
) -> None:
    http, _ = intake
    json_type = {"content-type": "application/json"}
    over = await http.post("/v1/tips", content=padded(TIP, LIMIT + 1), headers=json_type)
    assert_too_large(over)
    within = await http.post("/v1/tips", content=padded(TIP, LIMIT), headers=json_type)
    assert within.status_code == 201, within.text


async def test_a_streamed_body_is_counted_as_it_arrives(intake: Service) -> None:
    http, _ = intake
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield json.dumps(TIP, ensure_ascii=False).encode()
        for _ in range(64):
            sent += 16 * 1024
            yield b" " * (16 * 1024)

    answer = await http.post(
        "/v1/tips", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_too_large(answer)


async def test_staff_routes_are_limited_too(dispatch: Service, token: TokenFactory) -> None:
    http, _ = dispatch
    answer = await http.post(
        "/v1/cases/00000000-0000-0000-0000-000000000000/progress",
        content=padded({"text": "x"}, LIMIT * 4),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {token('dispatcher', 'township:T01')}",
        },
    )
    assert_too_large(answer)


async def test_uploads_keep_their_own_larger_limit(intake: Service) -> None:
    http, _ = intake
    data = png(77) + bytes(LIMIT * 2)
    answer = await http.post("/v1/attachments", files={"file": ("photo.png", data, "image/png")})
    assert answer.status_code == 201, answer.text
