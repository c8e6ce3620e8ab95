"""The WeChat official account's callback URL: server verification and passive replies.

This edge checks signatures and the signed timestamp's window, decrypts and encrypts (safe
mode; required when the account is in it) and caps the body; what a message means, the reply
it gets and taking each signed callback once are wechat_messages.py's.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import PlainTextResponse

from services.intake.errors import WeChatCallbackReplayed, WeChatMessageOfAnother
from services.intake.wechat_crypto import (
    WeChatCryptoError,
    decrypt,
    encrypt,
    signature_matches,
    timestamp_fresh,
)
from services.intake.wechat_crypto import signature as sign
from services.intake.wechat_messages import (
    MalformedMessage,
    encrypted_reply,
    inbound,
    read_fields,
    reply_to,
    text_reply,
)
from services.runtime.limits import own_body_limit
from services.runtime.problems import Problem
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/wechat", tags=["wechat"])

# A WeChat message is a few kilobytes; the safe mode's compatible variant about three times
# that. Anything near this limit is not from WeChat.
MAX_BODY_BYTES = 64 * 1024
XML = "application/xml"

Signature = Annotated[str, Query(min_length=40, max_length=40, pattern=r"^[0-9a-fA-F]{40}$")]
Timestamp = Annotated[str, Query(min_length=1, max_length=20, pattern=r"^[0-9]+$")]
Nonce = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_-]+$")]


def _forbidden(detail: str = "Signature verification failed.") -> Problem:
    return Problem(403, "Forbidden", detail)


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
        403: {
            "description": "bad signature or msg_signature; a timestamp outside the window; "
            "a callback taken before; a MsgId taken from another follower; plaintext to an "
            "account in safe mode"
        },
        413: {"description": "body over 64 KiB"},
    },
)
@own_body_limit
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
    if settings.wechat_safe_mode and not safe_mode:
        # The query's signature does not cover the body: only the encrypted, msg_signature'd
        # form proves the message is WeChat's.
        raise _forbidden("The account is in safe mode: the callback must be encrypted.")
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
    window = timedelta(seconds=settings.wechat_timestamp_window_seconds)
    if not timestamp_fresh(timestamp, runtime.clock(), window):
        raise _forbidden("The timestamp is outside the window: not a fresh callback.")

    try:
        content = await reply_to(runtime, message, int(timestamp), nonce)
    except WeChatCallbackReplayed as exc:
        raise _forbidden("This signed callback was taken before.") from exc
    except WeChatMessageOfAnother as exc:
        raise _forbidden("This MsgId was taken from another follower.") from exc
    if content == "success":
        return PlainTextResponse("success")
    reply = text_reply(message, content, runtime.clock())
    if safe_mode:
        sealed = encrypt(reply.encode(), key, settings.wechat_app_id, os.urandom(16))
        # WeChat's guide: the reply's timestamp and nonce may be the request's own.
        reply = encrypted_reply(sealed, sign(token, timestamp, nonce, sealed), timestamp, nonce)
    return Response(reply, media_type=XML)


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
