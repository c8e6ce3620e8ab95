"""行政执法公示 over HTTP, for anyone: the public enforcement record as JSON (Open311-style
field names where GeoReport v2 has one) and as a page (``/publicity``). No token: it holds
nothing that is not meant to be public (publicity.py says what is left out)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from services.dispatch.dependencies import reading
from services.dispatch.publicity import (
    PublicRecord,
    public_record,
    publishable_before,
    published_matters,
)
from services.dispatch.queries import closed_cases
from services.dispatch.wiring import current_reference
from services.runtime.pages import page_router
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["publicity"])
page = page_router("publicity", "/publicity", Path(__file__).with_name("static"))


class OfficerOut(BaseModel):
    name: str
    certificate_number: str | None = Field(description="执法证号")


class StepOut(BaseModel):
    step: str
    at: datetime


class PublicRecordOut(BaseModel):
    service_request_id: str = Field(description="the case id")
    service_code: str | None = Field(description="the matter's Open311 service code")
    service_name: str = Field(description="执法事项")
    matter_code: str
    action_type: str = Field(description="行政检查 / 行政处罚 / 行政许可 / 行政强制")
    legal_basis: str = Field(description="执法依据")
    result: str = Field(description="执法结果")
    agency_responsible: str | None = Field(description="the acting unit (执法主体)")
    acting_in_name_of: str | None = Field(
        description="决定机关: in whose name the decision was made — the township, or the "
        "county department (marked 委托执法 when a township decided by its entrustment)"
    )
    officer: OfficerOut | None = Field(description="执法人员")
    township: str | None
    village: str | None = Field(description="the finest place published")
    process: list[StepOut] = Field(description="执法流程: each step's time")
    status: str = "closed"
    updated_datetime: datetime = Field(description="when the case was closed")
    remedy: str = Field(description="救济渠道")


class PublicityOut(BaseModel):
    delay_days: float = Field(description="a case is published this long after it was closed")
    records: list[PublicRecordOut]


def _out(record: PublicRecord) -> PublicRecordOut:
    return PublicRecordOut(
        service_request_id=str(record.case_id),
        service_code=record.open311_service_code,
        service_name=record.matter_name,
        matter_code=record.matter_code,
        action_type=record.action_type,
        legal_basis=record.legal_basis,
        result=record.result,
        agency_responsible=record.acting_unit,
        acting_in_name_of=record.acting_in_name_of,
        officer=OfficerOut(
            name=record.officer.name, certificate_number=record.officer.certificate_number
        )
        if record.officer
        else None,
        township=record.township,
        village=record.village,
        process=[StepOut(step=s.name, at=s.at) for s in record.process],
        updated_datetime=record.closed_at,
        remedy=record.remedy,
    )


@router.get("/publicity", response_model=PublicityOut)
async def publicity(
    runtime: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        AwareDatetime | None, Query(description="only cases closed before this (the next page)")
    ] = None,
) -> PublicityOut:
    delay = runtime.settings.publicity_delay_days
    cutoff = publishable_before(runtime.clock(), timedelta(days=delay))
    if before is not None:
        cutoff = min(cutoff, before - timedelta(microseconds=1))
    reference = current_reference(runtime)
    async with reading(runtime) as session:
        closed = await closed_cases(session, cutoff, limit, published_matters(reference))
    records = [r for r in (public_record(c, reference) for c in closed) if r is not None]
    return PublicityOut(delay_days=delay, records=[_out(r) for r in records])
