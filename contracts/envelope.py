"""The CloudEvents 1.0 envelope every Whistle event travels in (structured JSON mode)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import cache
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator
from uuid6 import uuid7

from contracts.tenancy import COUNTY_PATTERN

CONTENT_TYPE = "application/cloudevents+json"

PERSONAL_KEY = "x-personal"
PERSONAL: dict[str, Any] = {PERSONAL_KEY: True}
"""``json_schema_extra`` of a payload field that is a citizen's personal data (their words,
place, contact): the generated JSON Schemas carry ``"x-personal": true`` on it, and the ledger
seals it under the tip's key (services/ledger/shredding.py) so that erasure can forget it."""


class EventData(BaseModel):
    """Base of every typed event payload; subclasses name their CloudEvents ``type``."""

    model_config = ConfigDict(extra="forbid")
    event_type: ClassVar[str]

    @classmethod
    def personal_fields(cls) -> tuple[str, ...]:
        """The payload's fields declared personal (:data:`PERSONAL`), in declaration order."""
        return _personal_fields(cls)


@cache
def _personal_fields(model: type[EventData]) -> tuple[str, ...]:
    return tuple(
        name
        for name, info in model.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get(PERSONAL_KEY)
    )


D = TypeVar("D", bound=EventData)


class CloudEvent(BaseModel):
    """CloudEvents 1.0 attributes Whistle uses; ``(source, id)`` is the idempotency key."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    subject: str | None = None
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    # Extension attribute: the county (tenant) the event belongs to, by its 6-digit division
    # code (contracts/tenancy.py). Absent only on events produced before tenancy; the outbox
    # relay puts the deployment's default county on any event its producer left without one.
    county: str | None = Field(default=None, pattern=COUNTY_PATTERN)
    data: dict[str, Any]

    @field_validator("time")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("time must carry a UTC offset (RFC 3339)")
        return value.astimezone(UTC)

    @field_serializer("time")
    def _rfc3339(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def to_json(self) -> dict[str, Any]:
        """The structured-mode JSON document: absent optional attributes are left out, while
        ``null`` values inside ``data`` stay, since a payload field may be required yet empty."""
        document = self.model_dump(mode="json")
        return {k: v for k, v in document.items() if v is not None or k == "data"}

    def to_bytes(self) -> bytes:
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":")).encode()

    def payload(self, model: type[D]) -> D:
        """The typed payload; raises pydantic.ValidationError if it does not match."""
        return model.model_validate(self.data)


def new_event(
    source: str, subject: str, data: EventData, now: datetime, county: str | None = None
) -> CloudEvent:
    """A new event; ``county`` is its aggregate's county (None: the deployment's default,
    which the outbox relay puts on it when it is published)."""
    return CloudEvent(
        id=str(uuid7()),
        source=source,
        type=data.event_type,
        subject=subject,
        time=now,
        county=county,
        data=data.model_dump(mode="json"),
    )
