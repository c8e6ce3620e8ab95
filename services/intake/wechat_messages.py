"""WeChat messages: read safely, taken once per MsgId, answered in the citizen's language.

A text (or a voice message WeChat has transcribed) opens a tip through intake's one
acceptance path. A photo or location the same follower sends within the supplement window
of that tip attaches to it (``TipSupplemented``); sent without a recent tip, it is answered
with a request to describe the problem first. WeChat retries a message it got no answer to
(up to three times, with the same MsgId): the stored message makes every retry a no-op that
gets the same reply — to the same follower only: the reply names a tip and its access code,
so a MsgId taken before from another follower is refused. Each signed callback is taken
once: its (timestamp, nonce) is remembered in PostgreSQL, shared by every replica, for as
long as the timestamp is in the window, and a request sent again is refused. Followers are
known only by a keyed hash of their OpenID.

WeChat waits five seconds for a passive reply, so a message is taken in one database
transaction, bounded in time (services/intake/database.py), and answered at once; the tip's
event leaves through the outbox afterwards.

A WeChat text carries no place. The tip is accepted anyway — dispatch puts a tip it cannot
place in the county's triage queue — and the reply invites a location within the window.

回访 by WeChat: once a follower's tip is resolved, replying "评价 满意" (基本满意, 不满意), or
"评价 1" (2, 3), rates it — the latest of their WeChat tips waiting for a rating — under the
same rules as the citizen page (feedback.py). While such a tip waits, a bare "1", "2", "3" or
满意 / 基本满意 / 不满意 rates it too; otherwise those words are a tip like any other text.
"""

from __future__ import annotations

import hmac
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from uuid import UUID

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.events import GeoPoint, Rating, TipSupplemented
from reference.county import County
from services.intake import database, tips
from services.intake.channels import MAX_TEXT, NewTip, accept, counties
from services.intake.contact import ContactVault
from services.intake.errors import (
    NoTrackingNumber,
    WeChatCallbackReplayed,
    WeChatMessageOfAnother,
)
from services.intake.feedback import RATING_TEXT, REFUSAL_TEXT, reopens
from services.intake.models import Tip, TipFeedback, WeChatMessage, WeChatNonce
from services.runtime.problems import is_unavailable
from services.runtime.service import Runtime

WELCOME = (
    "感谢关注！请直接发送文字（或语音）描述您遇到的问题，我们会立即受理并回复受理编号和查询码；"
    "随后可发送现场照片和位置作为补充。"
)
UNSUPPORTED = "暂不支持此类消息。请用文字（或语音）描述您遇到的问题，随后可补充现场照片和位置。"
UNRECOGNISED_VOICE = "抱歉，未能识别您的语音，请改用文字描述您遇到的问题。"
BLANK = "请用文字描述您遇到的问题。"
TOO_LONG = f"内容过长，请精简到 {MAX_TEXT} 字以内后重新发送。"
DESCRIBE_FIRST = "请先用文字描述您遇到的问题，受理后再发送现场照片或位置，我们会附加到您的诉求中。"
BUSY = "系统繁忙，您的消息尚未受理，请稍后重新发送。"
RATE_AGAIN = "您的评价未能记录，请重新发送。"
NOTHING_TO_RATE = (
    "您没有等待评价的诉求：诉求办结后，回复“评价 满意”“评价 基本满意”或“评价 不满意”即可评价。"
)


class MalformedMessage(ValueError):
    """Not a WeChat message: unparseable, forbidden XML constructs, or missing fields."""


class Outcome(StrEnum):
    TIP_OPENED = "tip_opened"
    SUPPLEMENTED = "supplemented"
    NO_RECENT_TIP = "no_recent_tip"
    RATED = "rated"
    NOT_RATED = "not_rated"


@dataclass(frozen=True)
class Inbound:
    """The fields of one callback message that Whistle uses."""

    account: str  # ToUserName: the official account's original id
    openid: str  # FromUserName: the follower
    msg_type: str
    msg_id: str | None = None
    content: str | None = None
    recognition: str | None = None
    pic_url: str | None = None
    media_id: str | None = None
    location: GeoPoint | None = None
    label: str | None = None
    event: str | None = None


def read_fields(document: bytes) -> dict[str, str]:
    """The child elements of a callback's ``<xml>`` root. A DTD is refused outright: WeChat
    never sends one, and refusing it refuses entity expansion and external entities too."""
    try:
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ET.ParseError) as exc:
        raise MalformedMessage(f"refused XML: {type(exc).__name__}") from exc
    if root.tag != "xml":
        raise MalformedMessage("the root element must be <xml>")
    return {child.tag: (child.text or "").strip() for child in root}


def inbound(fields: dict[str, str]) -> Inbound:
    missing = [name for name in ("ToUserName", "FromUserName", "MsgType") if not fields.get(name)]
    if missing:
        raise MalformedMessage(f"missing {', '.join(missing)}")
    msg_type = fields["MsgType"]
    location = None
    if msg_type == "location":
        try:
            location = GeoPoint(lat=fields["Location_X"], lon=fields["Location_Y"])  # type: ignore[arg-type]
        except (KeyError, ValidationError) as exc:
            raise MalformedMessage("a location needs numeric Location_X and Location_Y") from exc
    message = Inbound(
        account=fields["ToUserName"],
        openid=fields["FromUserName"],
        msg_type=msg_type,
        msg_id=fields.get("MsgId") or None,
        content=fields.get("Content"),
        recognition=fields.get("Recognition"),
        pic_url=fields.get("PicUrl") or None,
        media_id=fields.get("MediaId") or None,
        location=location,
        label=fields.get("Label") or None,
        event=fields.get("Event") or None,
    )
    if message.msg_type in TAKEN and message.msg_id is None:
        raise MalformedMessage(f"a {msg_type} message needs a MsgId")
    return message


TAKEN = ("text", "voice", "image", "location")


def tip_text(message: Inbound) -> str | None:
    """What a text or voice message says, once it is known to be acceptable as a tip."""
    return message.content if message.msg_type == "text" else message.recognition


def answer_without_storing(message: Inbound) -> str | None:
    """The reply to a message that stores nothing; None for one that must be taken.
    ``"success"`` is WeChat's "nothing to say" (an empty passive reply)."""
    if message.msg_type == "event":
        return WELCOME if message.event == "subscribe" else "success"
    if message.msg_type not in TAKEN:
        return UNSUPPORTED
    if message.msg_type in ("text", "voice"):
        said = (tip_text(message) or "").strip()
        if not said:
            return UNRECOGNISED_VOICE if message.msg_type == "voice" else BLANK
        if len(said) > MAX_TEXT:
            return TOO_LONG
    return None


# 回访 words: 1, 2, 3 or the rating's own words, after an optional "评价".
RATING_WORDS: dict[str, Rating] = {
    "1": "satisfied",
    "满意": "satisfied",
    "2": "basically_satisfied",
    "基本满意": "basically_satisfied",
    "3": "dissatisfied",
    "不满意": "dissatisfied",
}
_RATE_COMMAND = re.compile(r"^评价[\s:：,，]*(.+?)[。.!！]?$")


@dataclass(frozen=True)
class RatingWords:
    rating: Rating
    # Said with "评价": a rating whatever waits; without it, only while a tip waits for one.
    explicit: bool


def rating_in(text: str) -> RatingWords | None:
    """The rating a text gives, if it is one ("评价 满意", "评价1", "2", "不满意")."""
    said = unicodedata.normalize("NFKC", text).strip()
    command = _RATE_COMMAND.match(said)
    if command is not None:
        rating = RATING_WORDS.get(command.group(1).strip())
        return RatingWords(rating, explicit=True) if rating else None
    rating = RATING_WORDS.get(said.rstrip("。.!！"))
    return RatingWords(rating, explicit=False) if rating else None


def rated_reply(rating: str, tracking_no: str) -> str:
    reply = f"感谢您的评价：{RATING_TEXT[rating]}（受理编号 {tracking_no}）。"
    if reopens(rating):  # type: ignore[arg-type]
        reply += "您对办理结果不满意，案件将重新办理，请留意进度。"
    return reply


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside a CDATA section: close it and open another around the ">".
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def text_reply(message: Inbound, content: str, now: datetime) -> str:
    """A passive text reply: to the follower, from the account the message was sent to."""
    return (
        f"<xml><ToUserName>{_cdata(message.openid)}</ToUserName>"
        f"<FromUserName>{_cdata(message.account)}</FromUserName>"
        f"<CreateTime>{int(now.timestamp())}</CreateTime>"
        f"<MsgType>{_cdata('text')}</MsgType><Content>{_cdata(content)}</Content></xml>"
    )


def encrypted_reply(encrypted: str, msg_signature: str, timestamp: str, nonce: str) -> str:
    """The safe mode's envelope around an encrypted passive reply."""
    return (
        f"<xml><Encrypt>{_cdata(encrypted)}</Encrypt>"
        f"<MsgSignature>{_cdata(msg_signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp><Nonce>{_cdata(nonce)}</Nonce></xml>"
    )


def accepted_reply(tracking_no: str, access_code: str, window: timedelta) -> str:
    minutes = int(window.total_seconds() // 60)
    return (
        f"您的诉求已受理，受理编号 {tracking_no}，查询码 {access_code}，请妥善保存。"
        f"如需补充现场照片或位置，请在 {minutes} 分钟内直接发送。"
        "办结后回复“评价 满意”“评价 基本满意”或“评价 不满意”即可评价。"
    )


def supplemented_reply(kind: str, tracking_no: str) -> str:
    what = "位置" if kind == "location" else "照片"
    return f"已收到您补充的{what}，已附加到受理编号 {tracking_no} 的诉求中。"


async def reply_to(runtime: Runtime, message: Inbound, signed_at: int, nonce: str) -> str:
    """The reply to a signed callback's message, once its (timestamp, nonce) is claimed
    (:class:`WeChatCallbackReplayed` if it was taken before). Anything but a reply would not
    reach the follower (WeChat shows its own "service unavailable" for a failed callback), so
    a message that cannot be stored now — the database unavailable, no tracking number free —
    is answered with a request to send it again: nothing of it was kept, so that message is
    taken once."""
    try:
        await _claim(runtime, signed_at, nonce)
        content = answer_without_storing(message)
        if content is not None:
            return content
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


async def _claim(runtime: Runtime, signed_at: int, nonce: str) -> None:
    window = timedelta(seconds=runtime.settings.wechat_timestamp_window_seconds)
    async with database.transaction(runtime) as session:
        if not await claim_nonce(session, signed_at, nonce, runtime.clock(), window=window):
            raise WeChatCallbackReplayed(f"timestamp {signed_at}, nonce {nonce}")


async def claim_nonce(
    session: AsyncSession, signed_at: int, nonce: str, now: datetime, *, window: timedelta
) -> bool:
    """Remember a signed callback's (timestamp, nonce) until its timestamp leaves the window;
    False if it is remembered already. The insert is atomic across replicas: of two racing
    the same request, one inserts and the other finds the row (ON CONFLICT DO NOTHING). Rows
    whose timestamp has left the window are purged: such a callback is refused as stale."""
    await session.execute(delete(WeChatNonce).where(WeChatNonce.expires_at < now))  # type: ignore[arg-type]
    expires_at = datetime.fromtimestamp(signed_at, UTC) + window
    claimed = await session.scalar(
        insert(WeChatNonce)
        .values(signed_at=signed_at, nonce=nonce, expires_at=expires_at)
        .on_conflict_do_nothing()
        .returning(WeChatNonce.nonce)  # type: ignore[arg-type]
    )
    return claimed is not None


async def _take_once(runtime: Runtime, message: Inbound) -> str:
    vault: ContactVault = runtime.state["vault"]
    settings = runtime.settings
    window = timedelta(minutes=settings.wechat_supplement_window_minutes)
    # An official account's text names no place: the default county's, until each county
    # has its own account (docs/scale.md).
    county = counties(runtime).default.county
    async with database.transaction(runtime) as session:
        return await take(
            session,
            vault,
            message,
            runtime.clock(),
            window=window,
            timezone=settings.timezone,
            county=county,
        )


async def take(
    session: AsyncSession,
    vault: ContactVault,
    message: Inbound,
    now: datetime,
    *,
    window: timedelta,
    timezone: str,
    county: County,
) -> str:
    """Store what ``message`` adds and stage its event in the caller's transaction; return
    the reply text. A MsgId already taken gets the reply it got the first time, if it comes
    from the same follower (:class:`WeChatMessageOfAnother` otherwise)."""
    assert message.msg_id is not None  # inbound() requires one for every message taken
    taken = await session.get(WeChatMessage, message.msg_id)
    sender = vault.wechat_user_hash(message.openid)
    if taken is not None:
        if not hmac.compare_digest(taken.openid_hash, sender):
            raise WeChatMessageOfAnother(message.msg_id)
        return await _reply_again(session, vault, taken, window)
    record = WeChatMessage(
        msg_id=message.msg_id,
        openid_hash=sender,
        kind=message.msg_type,
        outcome=Outcome.NO_RECENT_TIP,
        media_id=message.media_id,
        pic_url=message.pic_url,
        lat=message.location.lat if message.location else None,
        lon=message.location.lon if message.location else None,
        label=message.label,
        received_at=now,
    )
    text = tip_text(message)
    said = rating_in(text) if text is not None else None
    if said is not None:
        waiting = await awaiting_rating(session, sender)
        if waiting is not None or said.explicit:
            return await _rate(session, record, waiting, said.rating, message.msg_id, now)
    if text is not None:
        receipt = await accept(
            session,
            vault,
            NewTip(
                channel="wechat",
                text=text.strip(),
                dedupe_key=message.msg_id,
                external_ref=message.msg_id,
            ),
            now,
            timezone,
            county,
        )
        record.outcome, record.tip_id = Outcome.TIP_OPENED, receipt.tip_id
        session.add(record)
        await session.flush()
        return accepted_reply(receipt.tracking_no, receipt.access_code, window)
    tip = await latest_tip(session, sender, now - window)
    if tip is None:
        session.add(record)
        await session.flush()
        return DESCRIBE_FIRST
    record.outcome, record.tip_id = Outcome.SUPPLEMENTED, tip.id
    session.add(record)
    await session.flush()
    added = TipSupplemented(
        tip_id=tip.id,
        channel="wechat",
        external_ref=message.msg_id,
        attachments=[message.media_id] if message.media_id else [],
        location=message.location,
        address=message.label,
        supplemented_at=now,
    )
    tips.supplement(session, added)
    return supplemented_reply(message.msg_type, tip.tracking_no)


async def _rate(
    session: AsyncSession,
    record: WeChatMessage,
    tip_id: UUID | None,
    rating: Rating,
    msg_id: str,
    now: datetime,
) -> str:
    """回访 by WeChat: rate the tip under the citizen page's rules, or say why not."""
    record.outcome = Outcome.NOT_RATED
    if tip_id is None:
        session.add(record)
        await session.flush()
        return NOTHING_TO_RATE
    tip, rated = await tips.rated_tip(session, tip_id)
    record.tip_id = tip.id
    why = tips.rating_refusal(tip, rated)
    if why is None:
        record.outcome = Outcome.RATED
        tips.record_rating(session, tip, rating, None, now, tips.Taken("wechat", None, msg_id))
    session.add(record)
    await session.flush()
    return rated_reply(rating, tip.tracking_no) if why is None else REFUSAL_TEXT[why]


async def awaiting_rating(session: AsyncSession, sender: str) -> UUID | None:
    """The id of the sender's latest WeChat tip whose case stands resolved and whose
    resolution they have not rated yet, if any."""
    found = await session.scalar(
        select(Tip.id)
        .join(WeChatMessage, WeChatMessage.tip_id == Tip.id)  # type: ignore[arg-type]
        .outerjoin(
            TipFeedback,
            (TipFeedback.tip_id == Tip.id)  # type: ignore[arg-type]
            & (TipFeedback.resolution_round == Tip.resolution_round),
        )
        .where(
            WeChatMessage.openid_hash == sender,
            WeChatMessage.outcome == Outcome.TIP_OPENED,
            Tip.status == "resolved",
            TipFeedback.tip_id.is_(None),  # type: ignore[union-attr]
        )
        .order_by(Tip.received_at.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    return found  # type: ignore[no-any-return]


async def latest_tip(session: AsyncSession, sender: str, since: datetime) -> Tip | None:
    """The sender's most recent WeChat tip, if it was received at or after ``since``."""
    found: Tip | None = await session.scalar(
        select(Tip)
        .join(WeChatMessage, WeChatMessage.tip_id == Tip.id)  # type: ignore[arg-type]
        .where(
            WeChatMessage.openid_hash == sender,
            WeChatMessage.outcome == Outcome.TIP_OPENED,
            Tip.received_at >= since,  # type: ignore[operator]
        )
        .order_by(Tip.received_at.desc())  # type: ignore[attr-defined]
        .limit(1)
    )
    return found


async def _reply_again(
    session: AsyncSession, vault: ContactVault, taken: WeChatMessage, window: timedelta
) -> str:
    if taken.outcome == Outcome.NO_RECENT_TIP:
        return DESCRIBE_FIRST
    if taken.outcome == Outcome.NOT_RATED and taken.tip_id is None:
        return NOTHING_TO_RATE
    tip = await session.get(Tip, taken.tip_id)
    assert tip is not None  # a foreign key
    if taken.outcome == Outcome.SUPPLEMENTED:
        return supplemented_reply(taken.kind, tip.tracking_no)
    if taken.outcome in (Outcome.RATED, Outcome.NOT_RATED):
        feedback = await session.scalar(
            select(TipFeedback).where(
                TipFeedback.channel == "wechat", TipFeedback.external_ref == taken.msg_id
            )
        )
        if feedback is not None:
            return rated_reply(feedback.rating, tip.tracking_no)
        # Refused the first time: say where the tip stands now.
        why = tips.rating_refusal(
            tip, await session.get(TipFeedback, (tip.id, tip.resolution_round))
        )
        return REFUSAL_TEXT[why or "already_rated"]
    assert tip.access_code_sealed is not None  # every tip since intake_0002 has one
    return accepted_reply(tip.tracking_no, vault.open_access_code(tip.access_code_sealed), window)
