"""Intake's tables: tips as received, and the citizen-visible timeline of each."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Identity, Index, LargeBinary, String, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class Tip(SQLModel, table=True):
    __tablename__ = "tip"
    __table_args__ = (
        # A retried submission is recognised by its channel's dedupe key.
        Index(
            "ux_tip_channel_dedupe_key",
            "channel",
            "dedupe_key",
            unique=True,
            postgresql_where=text("dedupe_key IS NOT NULL"),
        ),
        # A county's tips, newest first (docs/scale.md, "Tenancy": the county leads).
        Index("ix_tip_county_received_at", "county", "received_at"),
    )

    id: UUID = Field(primary_key=True)
    # The county (tenant) the tip belongs to: its place's (channels.py), by division code.
    county: str = Field(sa_column=Column(String(6), nullable=False))
    tracking_no: str = Field(sa_column=Column(String, nullable=False, unique=True))
    access_code_hash: str
    access_code_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    channel: str
    external_ref: str | None = None
    dedupe_key: str | None = None
    # The submission's fingerprint (channels.fingerprint): a retry with the same dedupe key
    # must carry the same one. None on tips stored before it was kept.
    request_digest: str | None = None
    text: str
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    grid_id: str | None = None
    category_hint: str | None = None
    urgency_hint: str | None = None
    # Name and phone, sealed with the contact key; events and logs only see the masked number.
    contact_sealed: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    masked_phone: str | None = None
    phone_hash: str | None = Field(default=None, index=True)
    anonymous: bool = False
    attachments: list[str] = Field(default_factory=list, sa_column=Column(JSONB, nullable=False))
    resolved_on_spot: bool = False
    resolution_note: str | None = None
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    case_id: UUID | None = Field(default=None, index=True)
    status: str = "received"
    # The tip joined another tip's open case (near-duplicate, merged by dispatch).
    joined_case: bool = False
    # How many times its case was resolved: the citizen may rate once per resolution.
    resolution_round: int = 0
    # When its personal data (words, place, contact, photos) was erased: retention.py.
    erased_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


class TipTimelineEntry(SQLModel, table=True):
    __tablename__ = "tip_timeline"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    tip_id: UUID = Field(foreign_key="tip.id", index=True)
    status: str
    at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class Attachment(SQLModel, table=True):
    """A stored upload, addressed by the SHA-256 of its bytes (services/intake/attachments.py)."""

    __tablename__ = "attachment"

    sha256: str = Field(primary_key=True)
    content_type: str
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    stored_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class TipFeedback(SQLModel, table=True):
    """回访: the citizen's rating of one resolution of their tip's case, on the channel it was
    taken by: the citizen page, a WeChat reply, a 12345 operator's follow-up call."""

    __tablename__ = "tip_feedback"
    __table_args__ = (
        # A retried hotline call id or WeChat MsgId finds the rating it recorded.
        Index(
            "ux_tip_feedback_channel_ref",
            "channel",
            "external_ref",
            unique=True,
            postgresql_where=text("external_ref IS NOT NULL"),
        ),
    )

    tip_id: UUID = Field(foreign_key="tip.id", primary_key=True)
    resolution_round: int = Field(primary_key=True)
    case_id: UUID
    rating: str
    comment: str | None = None
    rated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    channel: str = Field(default="web", sa_column=Column(String, nullable=False))
    # The hotline operator who recorded the call's answer.
    recorded_by: str | None = None
    # The call id (hotline) or MsgId (WeChat) it was recorded from.
    external_ref: str | None = None


class FollowUpAttempt(SQLModel, table=True):
    """A 12345 follow-up call that could not reach the citizen: not a rating, and the case's
    follow-up window still runs. Its call id makes a retry harmless."""

    __tablename__ = "follow_up_attempt"

    call_id: str = Field(primary_key=True)
    tip_id: UUID = Field(foreign_key="tip.id", index=True)
    resolution_round: int
    recorded_by: str
    attempted_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class RateLimit(SQLModel, table=True):
    """Each limit's state per key: its GCRA theoretical arrival time (services/intake/gcra.py,
    kept by services/intake/ratelimit.py)."""

    __tablename__ = "rate_limit"

    name: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    tat: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class WeChatMessage(SQLModel, table=True):
    """Each WeChat message taken (see services/intake/wechat_messages.py): its MsgId makes
    WeChat's retries no-ops, and the sender's keyed hash finds their latest tip."""

    __tablename__ = "wechat_message"
    __table_args__ = (Index("ix_wechat_message_sender", "openid_hash", "received_at"),)

    msg_id: str = Field(primary_key=True)
    # A keyed hash of the sender's OpenID: the OpenID itself is never stored.
    openid_hash: str
    kind: str
    outcome: str
    tip_id: UUID | None = Field(default=None, foreign_key="tip.id", index=True)
    # Media stay with WeChat: their references are kept, the bytes are not downloaded.
    media_id: str | None = None
    pic_url: str | None = None
    lat: float | None = None
    lon: float | None = None
    label: str | None = None
    received_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


class WeChatNonce(SQLModel, table=True):
    """Each signed WeChat callback taken, by its (timestamp, nonce), while its timestamp is
    within the window (services/intake/wechat_messages.py): the same signed request is taken
    once, by whichever replica inserts it first."""

    __tablename__ = "wechat_nonce"

    # The callback's timestamp (seconds since the epoch) and nonce, as WeChat signed them.
    signed_at: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    nonce: str = Field(primary_key=True)
    # When the timestamp leaves the window: the row is purged after it.
    expires_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, index=True)
    )
