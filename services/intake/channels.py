"""Receiving a tip, whatever channel it came through: one acceptance path, one event.

Each channel's edge (web.py, hotline.py, grid.py, open311.py, wechat.py) reads its own request,
checks what only it can know (a grid worker's grid, an Open311 client's key) and hands over a
:class:`NewTip`. From there every channel takes the same path:

- tips from the web and Open311 count against rate limits, per address and hour and per phone
  number and day (``within_tip_limits``);
- a tip names only attachments uploaded before (``POST /v1/attachments``, whose uploads count
  against their address's limit and are recorded once per content);
- ``receive`` accepts the tip in a transaction of its own, ``accept`` in the caller's (WeChat
  records its message in the same one): the tip with its contact sealed and its phone number
  masked, a tracking number and access code, its first timeline step and its
  ``whistle.tip.received`` event, all committed together;
- a retry of the same submission (same channel and dedupe key: an ``Idempotency-Key``, a 12345
  call id, a WeChat ``MsgId``) finds the stored tip and gets the original answer back, access
  code included (kept sealed for that); the same key with another body is not a retry and is
  refused (``IdempotencyKeyReused``): each tip keeps its submission's fingerprint. Keys are
  scoped by the edge to whoever sent them — a web key to the client's address, a grid key to
  the worker, an Open311 key to the client's API key — so two senders' keys never collide.

Refusals are domain errors (errors.py); each edge says them in its own terms.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Insert, insert, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from uuid6 import uuid7

from contracts.envelope import new_event
from contracts.events import Channel, ContactRef, GeoPoint, TipReceived, Urgency
from contracts.topics import TIPS
from reference.county import County, CountySet
from services.intake import SOURCE, attachments, database
from services.intake.contact import ContactVault, mask_phone, redact_for_events
from services.intake.errors import IdempotencyKeyReused, NoTrackingNumber, UnknownAttachment
from services.intake.models import Attachment, Tip, TipTimelineEntry
from services.intake.ratelimit import DAY, HOUR, Limit, enforce
from services.intake.tips import STATUS_TEXT
from services.intake.tracking import new_access_code, new_tracking_no
from services.runtime.db import bound_insert
from services.runtime.outbox import stage
from services.runtime.service import Runtime
from services.runtime.uploads import StoredFile

# As long as whistle.tip.received carries.
MAX_TEXT = 4000
TRACKING_NUMBER_ATTEMPTS = 10


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text must not be blank")
    return text


TipText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_not_blank)]
GridId = Annotated[str, Field(min_length=1, max_length=64)]


def has_place(location: GeoPoint | None, address: str | None, grid_id: str | None) -> bool:
    """Whether a tip says where the problem is. Every channel but WeChat asks for a place: a
    WeChat text carries none, and dispatch triages a tip it cannot place by hand."""
    return location is not None or address is not None or grid_id is not None


class Located(BaseModel):
    """Where the problem is: at least one of coordinates, an address or a grid."""

    model_config = ConfigDict(extra="forbid")
    location: GeoPoint | None = None
    address: str | None = Field(default=None, min_length=1, max_length=200)
    grid_id: GridId | None = None

    @model_validator(mode="after")
    def _somewhere(self) -> Located:
        if not has_place(self.location, self.address, self.grid_id):
            raise ValueError("give one of location, address or grid_id")
        return self


@dataclass(frozen=True)
class NewTip:
    """A tip as a channel hands it over, before it is stored."""

    channel: Channel
    text: str
    location: GeoPoint | None = None
    address: str | None = None
    grid_id: str | None = None
    category_hint: str | None = None
    urgency_hint: Urgency | None = None
    contact_name: str | None = None
    contact_phone: str | None = None
    anonymous: bool = False
    attachments: tuple[str, ...] = field(default=())
    resolved_on_spot: bool = False
    resolution_note: str | None = None
    # What makes a retry the same submission, unique per channel.
    dedupe_key: str | None = None
    # The channel's own reference (call id, message id), kept for the record.
    external_ref: str | None = None
    # The key as the client sent it (Idempotency-Key, call id), named when it is reused for
    # another submission; the dedupe key above may carry a scope in front of it.
    client_key: str | None = None
    # Channel inspection: the inspection task whose finding this is (the case records it).
    inspection_task_id: str | None = None


NOT_THE_SUBMISSION = ("dedupe_key", "external_ref", "client_key")


def fingerprint(new: NewTip) -> str:
    """A digest of what was submitted: a retry under the same dedupe key must match it."""
    fields = {k: v for k, v in asdict(new).items() if k not in NOT_THE_SUBMISSION}
    if new.location is not None:
        fields["location"] = new.location.model_dump(mode="json")
    canonical = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Receipt:
    tip_id: UUID
    tracking_no: str
    access_code: str
    status: str
    # A retry of a submission accepted before: this is the original answer.
    duplicate: bool


class TipAccepted(BaseModel):
    """The answer to an accepted tip: what the citizen needs to follow it."""

    tip_id: UUID
    tracking_no: str
    access_code: str
    status: str
    status_text: str

    @classmethod
    def of(cls, receipt: Receipt) -> TipAccepted:
        return cls(
            tip_id=receipt.tip_id,
            tracking_no=receipt.tracking_no,
            access_code=receipt.access_code,
            status=receipt.status,
            status_text=STATUS_TEXT.get(receipt.status, receipt.status),
        )


async def within_tip_limits(runtime: Runtime, new: NewTip, address: str) -> None:
    """Count a citizen's tip against the limits of the address it came from and of the phone
    number it gives (unless anonymous); RateLimited if over any."""
    settings = runtime.settings
    checks = [(Limit("tips/address", settings.rate_limit_tips_per_address_per_hour, HOUR), address)]
    phone = None if new.anonymous else new.contact_phone
    if phone:
        vault: ContactVault = runtime.state["vault"]
        per_phone = Limit("tips/phone", settings.rate_limit_tips_per_phone_per_day, DAY)
        checks.append((per_phone, vault.phone_hash(phone)))
    await enforce(runtime, checks)


async def within_upload_limits(runtime: Runtime, address: str) -> None:
    settings = runtime.settings
    limit = Limit("attachments/address", settings.rate_limit_attachments_per_address_per_hour, HOUR)
    await enforce(runtime, [(limit, address)])


async def keep_upload(runtime: Runtime, stored: StoredFile) -> tuple[Attachment, bool]:
    """Record an uploaded file; whether this upload created the record (False: the same bytes
    were uploaded before)."""
    async with database.transaction(runtime) as session:
        return await attachments.record(session, stored, runtime.clock())


async def require_stored(runtime: Runtime, ids: Sequence[str]) -> None:
    """UnknownAttachment unless every id names an uploaded attachment."""
    if not ids:
        return
    async with database.reading(runtime) as session:
        missing = await attachments.unknown(session, ids)
    if missing:
        raise UnknownAttachment(missing)


def counties(runtime: Runtime) -> CountySet:
    """The counties intake takes tips for (loaded at start: app.py)."""
    loaded: CountySet = runtime.state["counties"]
    return loaded


def county_of(runtime: Runtime, new: NewTip) -> County:
    """The county a tip belongs to, by its place (reference.county.CountySet.county_of_place)."""
    lat, lon = (new.location.lat, new.location.lon) if new.location else (None, None)
    return counties(runtime).county_of_place(new.grid_id, lat, lon).county


async def receive(runtime: Runtime, new: NewTip) -> Receipt:
    """Accept a tip in its own transaction; a retry of one already accepted gets the original
    receipt, marked as a duplicate."""
    await require_stored(runtime, new.attachments)
    vault: ContactVault = runtime.state["vault"]
    county = county_of(runtime, new)
    try:
        async with database.transaction(runtime) as session:
            # Optimistic: most submissions are new, and a retry (same dedupe key) is refused by
            # the key's unique index at the insert, so it is looked for only then — one round
            # trip fewer for every new tip (docs/benchmarks.md).
            return await accept(
                session,
                vault,
                new,
                runtime.clock(),
                runtime.settings.timezone,
                county,
                retry=False,
            )
    except IntegrityError:
        # A retry, or a concurrent one with the same dedupe key that committed first: answer
        # as the original was answered.
        async with database.reading(runtime) as session:
            found = await find_duplicate(session, vault, new)
        if found is None:
            raise
        return found


async def find_duplicate(session: AsyncSession, vault: ContactVault, new: NewTip) -> Receipt | None:
    """The original receipt, if ``new`` retries a submission accepted before;
    IdempotencyKeyReused if its dedupe key was accepted with another body."""
    if new.dedupe_key is None:
        return None
    tip = await session.scalar(
        select(Tip).where(Tip.channel == new.channel, Tip.dedupe_key == new.dedupe_key)
    )
    if tip is None or tip.access_code_sealed is None:
        return None
    if tip.request_digest is not None and tip.request_digest != fingerprint(new):
        raise IdempotencyKeyReused(new.client_key or new.dedupe_key)
    return Receipt(
        tip.id, tip.tracking_no, vault.open_access_code(tip.access_code_sealed), tip.status, True
    )


async def accept(
    session: AsyncSession,
    vault: ContactVault,
    new: NewTip,
    now: datetime,
    timezone: str,
    county: County,
    *,
    retry: bool = True,
) -> Receipt:
    """Store the tip as ``county``'s and stage its event; the caller commits. Inserts at once, so a
    concurrent retry with the same dedupe key fails here with an IntegrityError. With ``retry``
    (the default) a submission accepted before is looked for first and answered with its
    original receipt; without, the caller answers the IntegrityError so."""
    duplicate = await find_duplicate(session, vault, new) if retry else None
    if duplicate is not None:
        return duplicate
    tip_id = uuid7()
    access_code = new_access_code()
    phone = None if new.anonymous else new.contact_phone
    name = None if new.anonymous else new.contact_name
    tip = Tip(
        id=tip_id,
        county=county.code,
        tracking_no="",  # chosen as it is inserted
        access_code_hash=vault.hash_access_code(tip_id, access_code),
        access_code_sealed=vault.seal_access_code(access_code),
        channel=new.channel,
        external_ref=new.external_ref,
        dedupe_key=new.dedupe_key,
        request_digest=fingerprint(new) if new.dedupe_key else None,
        text=new.text,
        lat=new.location.lat if new.location else None,
        lon=new.location.lon if new.location else None,
        address=new.address,
        grid_id=new.grid_id,
        category_hint=new.category_hint,
        urgency_hint=new.urgency_hint,
        contact_sealed=vault.seal(name, phone) if phone or name else None,
        masked_phone=mask_phone(phone) if phone else None,
        phone_hash=vault.phone_hash(phone) if phone else None,
        anonymous=new.anonymous,
        attachments=list(new.attachments),
        resolved_on_spot=new.resolved_on_spot,
        resolution_note=new.resolution_note,
        received_at=now,
    )
    tracking_no = await _insert_received(session, tip, now, timezone, county.tracking_prefix)
    payload = TipReceived(
        tip_id=tip_id,
        tracking_no=tracking_no,
        channel=new.channel,
        external_ref=new.external_ref,
        # What consumers need to act, no more (issue #20): the words without the numbers and
        # e-mail addresses typed into them, and of the contact only the keyed hash.
        text=redact_for_events(new.text),
        location=new.location,
        address=new.address,
        grid_id=new.grid_id,
        category_hint=new.category_hint,
        urgency_hint=new.urgency_hint,
        inspection_task_id=UUID(new.inspection_task_id) if new.inspection_task_id else None,
        contact=ContactRef(phone_hash=tip.phone_hash) if phone else None,
        anonymous=new.anonymous,
        attachments=list(new.attachments),
        resolved_on_spot=new.resolved_on_spot,
        resolution_note=redact_for_events(new.resolution_note) if new.resolution_note else None,
        received_at=now,
    )
    stage(session, TIPS, new_event(SOURCE, str(tip_id), payload, now, county.code))
    return Receipt(tip_id, tracking_no, access_code, "received", False)


def _received_statement() -> Insert:
    """The tip and its first timeline entry ("received") in one statement (see
    ``_insert_received``), built once with a bound parameter per tip column: building it per
    tip, through the ORM's bulk-insert path, was a tenth of intake's CPU under load."""
    tip, timeline = Tip.__table__, TipTimelineEntry.__table__  # type: ignore[attr-defined]
    inserted = (
        bound_insert(tip)
        .on_conflict_do_nothing(index_elements=["tracking_no"])
        .returning(tip.c.id, tip.c.received_at)
        .cte("inserted")
    )
    return (
        insert(timeline)
        .from_select(
            ["tip_id", "status", "at"],
            select(inserted.c.id, literal("received"), inserted.c.received_at),
        )
        .returning(timeline.c.tip_id)
    )


INSERT_RECEIVED = _received_statement()


async def _insert_received(
    session: AsyncSession, tip: Tip, now: datetime, timezone: str, prefix: str
) -> str:
    """Insert ``tip`` and its first timeline entry ("received") in one statement, under a
    tracking number no tip holds yet; the number.

    Numbers are six random digits a day, so a busy county's numbers collide now and then. The
    insert does nothing on a taken number (``ON CONFLICT (tracking_no) DO NOTHING``) and returns
    no row; unlike a unique violation that leaves the transaction usable, so another number is
    tried in the same transaction, with no read beforehand. Any other conflict (a retried
    dedupe key) still raises IntegrityError."""
    columns = {c.name: getattr(tip, c.name) for c in Tip.__table__.columns}  # type: ignore[attr-defined]
    for _ in range(TRACKING_NUMBER_ATTEMPTS):
        candidate = new_tracking_no(now, timezone, prefix)
        if await session.scalar(INSERT_RECEIVED, {**columns, "tracking_no": candidate}):
            return candidate
    raise NoTrackingNumber()
