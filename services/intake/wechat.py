"""The WeChat official account's callback URL: server verification and passive replies.

WeChat waits five seconds for a passive reply, so a message is taken in one database
transaction, bounded in time (services/intake/database.py), and answered at once; the tip's
event leaves through the outbox afterwards.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import IntegrityError

from services.intake import database
from services.intake.contact import ContactVault
from services.intake.edges import RuntimeDep
from services.intake.errors import NoTrackingNumber
from services.intake.wechat_crypto import WeChatCryptoError, decrypt, encrypt, signature_matches
from services.intake.wechat_crypto import signature as sign
from services.intake.wechat_messages import (
    BUSY,
    Inbound,
    MalformedMessage,
    answer_without_storing,
    encrypted_reply,
    inbound,
    read_fields,
    take,
    text_reply,
)
from services.runtime.problems import Problem, is_unavailable
from services.runtime.service import Runtime

router = APIRouter(prefix="/wechat", tags=["wechat"])

# A WeChat message is a few kilobytes; the safe mode's compatible variant about three times
# that. Anything near this limit is not from WeChat.
MAX_BODY_BYTES = 64 * 1024
XML = "application/xml"

Signature = Annotated[str, Query(min_length=40, max_length=40, pattern=r"^[0-9a-fA-F]{40}$")]
Timestamp = Annotated[str, Query(min_length=1, max_length=20, pattern=r"^[0-9]+$")]
Nonce = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]


def _forbidden() -> Problem:
    return Problem(403, "Forbidden", "Signature verification failed.")


@router.get("/callback", response_class=PlainTextResponse)
async def verify_server(
    runtime: RuntimeDep,
    signature: Signature,
    timestamp: Timestamp,
    nonce: Nonce,
    echostr: Annotated[str, Query(min_length=1, max_length=256)],
) -> PlainTextResponse:
    """WeChat checks that this URL belongs to the account: echo ``echostr`` if signed."""
    if not signature_matches(signature, runtime.settings.wechat_token, timestamp, nonce):
        raise _forbidden()
    return PlainTextResponse(echostr)


@router.post(
    "/callback",
    responses={
        200: {"content": {XML: {}}, "description": "the passive reply, or `success`"},
        400: {"description": "not a WeChat message: bad XML, a DTD or entities, bad framing"},
        403: {"description": "bad signature or msg_signature"},
        413: {"description": "body over 64 KiB"},
    },
)
async def receive_message(
    request: Request,
    runtime: RuntimeDep,
    signature: Signature,
    timestamp: Timestamp,
    nonce: Nonce,
    encrypt_type: Annotated[str | None, Query(pattern=r"^(raw|aes)$")] = None,
    msg_signature: Signature | None = None,
) -> Response:
    settings = runtime.settings
    token = settings.wechat_token
    key: bytes = runtime.state["wechat_aes_key"]
    body = await _capped_body(request)
    safe_mode = encrypt_type == "aes"
    try:
        if safe_mode:
            encrypted = read_fields(body).get("Encrypt")
            if not encrypted:
                raise MalformedMessage("safe mode needs an Encrypt element")
            if msg_signature is None or not signature_matches(
                msg_signature, token, timestamp, nonce, encrypted
            ):
                raise _forbidden()
            body = decrypt(encrypted, key, settings.wechat_app_id)
        elif not signature_matches(signature, token, timestamp, nonce):
            raise _forbidden()
        message = inbound(read_fields(body))
    except (MalformedMessage, WeChatCryptoError) as exc:
        raise Problem(400, "Bad Request", str(exc)) from exc

    content = answer_without_storing(message)
    if content is None:
        content = await _take(runtime, message)
    if content == "success":
        return PlainTextResponse("success")
    reply = text_reply(message, content, runtime.clock())
    if safe_mode:
        sealed = encrypt(reply.encode(), key, settings.wechat_app_id, os.urandom(16))
        # WeChat's guide: the reply's timestamp and nonce may be the request's own.
        reply = encrypted_reply(sealed, sign(token, timestamp, nonce, sealed), timestamp, nonce)
    return Response(reply, media_type=XML)


async def _take(runtime: Runtime, message: Inbound) -> str:
    """The reply to a message to store. Anything but a reply would not reach the follower
    (WeChat shows its own "service unavailable" for a failed callback), so a message that
    cannot be stored now — the database unavailable, no tracking number free — is answered
    with a request to send it again: nothing of it was kept, so that message is taken once."""
    try:
        try:
            return await _take_once(runtime, message)
        except IntegrityError:
            # WeChat's retry raced the first delivery and lost: taken again, it finds the
            # stored message and answers as the first delivery did.
            return await _take_once(runtime, message)
    except NoTrackingNumber:
        return BUSY
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        return BUSY


async def _take_once(runtime: Runtime, message: Inbound) -> str:
    vault: ContactVault = runtime.state["vault"]
    settings = runtime.settings
    window = timedelta(minutes=settings.wechat_supplement_window_minutes)
    async with database.transaction(runtime) as session:
        return await take(
            session, vault, message, runtime.clock(), window=window, timezone=settings.timezone
        )


async def _capped_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    return bytes(body)


def _too_large() -> Problem:
    return Problem(413, "Content Too Large", f"The body exceeds {MAX_BODY_BYTES} bytes.")
