"""Dispatch's tables: the cases and who holds them."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Column, DateTime, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

# Cases that keep a staff member busy, for picking the least loaded one.
HELD_STATUSES = ("assigned", "accepted", "in_progress")


class Case(SQLModel, table=True):
    __tablename__ = "cases"

    id: UUID = Field(primary_key=True)
    tip_id: UUID = Field(sa_column=Column(Uuid, nullable=False, unique=True))
    status: str = Field(index=True)
    matter_code: str | None = None
    township_code: str | None = Field(default=None, index=True)
    village_code: str | None = None
    grid_id: str | None = None
    urgency: str
    unit_id: str | None = Field(default=None, index=True)
    staff_id: str | None = Field(default=None, index=True)
    queue: str | None = None
    rejections: int = 0
    catalogue_version: str
    routing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSONB, nullable=False))
    version: int = 1
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
