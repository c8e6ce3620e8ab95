"""What dispatch's routers share to take a request: who may call (roles), the case version the
caller saw (If-Match), and the case service or a session whose refusals are answered as
problems (problems.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Header, Query, Response
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.tenancy import COUNTY_PATTERN
from reference.county import ReferenceData
from services.dispatch.cases import CaseService
from services.dispatch.models import Case
from services.dispatch.problems import answered_as_problems
from services.dispatch.queries import reference_for
from services.dispatch.views import CaseView, case_view
from services.dispatch.wiring import case_service, current_counties
from services.runtime.auth import Principal, require_roles
from services.runtime.problems import Problem
from services.runtime.service import Runtime

CaseReader = Annotated[
    Principal,
    Depends(
        require_roles(
            "dispatcher",
            "unit_member",
            "county_supervisor",
            "county_government",
            "legal_reviewer",
            "auditor",
            "admin",
        )
    ),
]
CaseActor = Annotated[
    Principal, Depends(require_roles("dispatcher", "unit_member", "county_supervisor"))
]
County = Annotated[Principal, Depends(require_roles("county_supervisor"))]
# 县政府: approves or rejects the county supervisor's admission proposals (准入).
Government = Annotated[Principal, Depends(require_roles("county_government"))]
# Who reads what waits for an admission approval: the government, and the supervisor proposing.
AdmissionReader = Annotated[
    Principal, Depends(require_roles("county_government", "county_supervisor"))
]

# 法制审核人员: approves or returns the penalty decisions on the 重大执法决定 list.
LegalReviewer = Annotated[Principal, Depends(require_roles("legal_reviewer"))]
# Who reads what waits for legal review: the reviewers, and the county supervising them.
LegalReviewReader = Annotated[
    Principal, Depends(require_roles("legal_reviewer", "county_supervisor"))
]

# A read naming things from one county's reference data, not about a case: which county.
ChosenCounty = Annotated[
    str | None,
    Query(
        pattern=COUNTY_PATTERN,
        description="a county the caller reads, by division code (a city token's choice; "
        "default: the token's one county, the default county for the city's roles)",
    ),
]


def chosen_reference(runtime: Runtime, principal: Principal, county: str | None) -> ReferenceData:
    """The reference data of the county a form about no case names things from
    (queries.reference_for); a county the caller does not read is as absent as an unknown one."""
    try:
        return reference_for(current_counties(runtime), principal, chosen=county)
    except LookupError as exc:
        raise Problem(404, "未找到", f"没有您可查看的县：{exc.args[0]}。") from None


IfMatch = Annotated[
    str | None, Header(alias="If-Match", description="the ETag of the case as you last saw it")
]


def expected_version(if_match: str | None) -> int:
    """The case version the caller saw, from If-Match: required for every change."""
    if if_match is None:
        raise Problem(
            428,
            "Precondition Required",
            "Send If-Match with the case's ETag, so that two people cannot act on one version.",
        )
    try:
        return int(if_match.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise Problem(412, "Precondition Failed", "If-Match is not a case ETag.") from exc


@asynccontextmanager
async def changing(runtime: Runtime) -> AsyncIterator[CaseService]:
    """The case service in one transaction: committed when the block ends, rolled back on a
    refusal, which leaves as its problem."""
    with answered_as_problems():
        async with runtime.transaction() as session:
            yield case_service(runtime, session)


Command = Callable[[CaseService, int], Awaitable[Case]]
"""A command of the case service, given the case version the caller saw."""


async def change_case(
    runtime: Runtime, if_match: str | None, response: Response, command: Command
) -> CaseView:
    """Run ``command`` at the version If-Match names, in one transaction; the case as it now
    stands, or the refusal as its problem."""
    expected = expected_version(if_match)
    async with changing(runtime) as cases:
        case = await command(cases, expected)
    return case_view(case, response)


@asynccontextmanager
async def reading(runtime: Runtime) -> AsyncIterator[AsyncSession]:
    """A session to read cases with (``cases.find_case``); a refusal leaves as its problem."""
    with answered_as_problems():
        async with runtime.sessions() as session:
            yield session
