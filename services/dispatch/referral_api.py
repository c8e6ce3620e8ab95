"""移送: a county department refers a matter that belongs to a township (POST /v1/referrals).

A thin edge: the case service (``CaseService.refer``) judges the referral by the authority
rule and opens the township's case; its refusals leave as problems (problems.py).

Retries are safe with an ``Idempotency-Key``, as intake's tips are: the key, scoped to the
department, stands for one referral id; the same key and body again answer 200 with the same
case, the same key with another body is 409 and nothing is opened."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated
from uuid import UUID, uuid5

from fastapi import APIRouter, Depends, Header, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.dispatch.cases import Referral, ReferralKey
from services.dispatch.dependencies import changing
from services.dispatch.views import CaseView, case_view
from services.runtime.auth import Principal, require_roles
from services.runtime.service import RuntimeDep

router = APIRouter(prefix="/v1", tags=["referrals"])

# A county department's officer (scope dept:<code>) refers for their own department only.
Department = Annotated[Principal, Depends(require_roles("county_department"))]
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=128, description="makes retries safe"),
]
# The namespace of the referral ids that Idempotency-Keys stand for (uuid5 of department + key).
REFERRAL_KEYS = UUID("6f0d6b8e-2d7c-5a4e-9d55-8f3a0c1b7e21")


class ReferralIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    department_code: str = Field(min_length=1, max_length=32, description="the referring one")
    matter_code: str = Field(min_length=1, max_length=32, description="a catalogue item")
    township_code: str = Field(min_length=1, max_length=32)
    grid_id: str | None = Field(default=None, max_length=64, description="the grid, if known")
    place: str | None = Field(default=None, max_length=500, description="where, in words")
    facts: str = Field(min_length=1, max_length=4000, description="what the department found")
    officer: str | None = Field(default=None, max_length=200, description="else the token's")


def keyed(body: ReferralIn, key: str) -> tuple[UUID, ReferralKey]:
    """The referral id ``key`` stands for (scoped to the body's department, which the caller
    must act for), and the key with a digest of the body."""
    canonical = json.dumps(
        body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":")
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    return uuid5(REFERRAL_KEYS, f"{body.department_code}\n{key}"), ReferralKey(key, fingerprint)


@router.post(
    "/referrals",
    status_code=201,
    response_model=CaseView,
    responses={
        200: {"description": "a retry under the same Idempotency-Key: the same case"},
        409: {"description": "the Idempotency-Key was used before with another body"},
    },
)
async def refer(
    body: ReferralIn,
    caller: Department,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    """Open the township's case from the department's referral, assigned by the authority
    rule; a matter the township may not lead (county-only, assist, unclaimed, out-of-list) is
    refused (422, 不予移送)."""
    referral_id, key = keyed(body, idempotency_key) if idempotency_key else (None, None)
    referral = Referral(**body.model_dump())
    try:
        async with changing(runtime) as cases:
            case, opened = await cases.refer(caller, referral, referral_id, key)
    except IntegrityError:
        if referral_id is None:
            raise
        # The same key sent twice at once: the other request opened the case first (the
        # referral id is unique as the case's tip). Asked again, this one finds it.
        async with changing(runtime) as cases:
            case, opened = await cases.refer(caller, referral, referral_id, key)
    view = case_view(case, response)
    response.status_code = 201 if opened else 200
    return view


class DepartmentPageCors:
    """CORS for ``/v1/referrals`` alone, from the department page's origin (escalation's
    ``/dept``, WHISTLE_DEPARTMENT_PAGE_ORIGIN): its referral form calls dispatch with the
    department's bearer token. Every other path stays same-origin."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["authorization", "content-type", "idempotency-key"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/referrals":
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
