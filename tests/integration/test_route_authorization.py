"""Every staff route of the four services, in one table: who may call it.

The routes are read from the services' definitions (every APIRoute of their routers), so a
route added without a row here fails ``test_the_table_names_every_route``: an authenticated
route must appear in ``STAFF`` with the roles allowed, any other in ``PUBLIC`` (citizens,
Open311 and WeChat with their own credentials, the published tree head and key, pages).

For each staff route: no token, a malformed one, an expired one, one for another audience or
issuer, and one signed by a foreign key are 401; every role not in its row is 403. Roles are
refused before anything is read, so the answers are the same for any case; a case outside an
allowed caller's scopes is answered 404 by the route itself
(tests/integration/test_deadline_visibility.py, the dispatch and extension tests). The apps run
without their lifespan: a stub runtime carries only the token verifier, as refusals need no
more. Allowed roles (with every scope) must get past the check: anything but 401 and 403.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.dispatch.app import DISPATCH
from services.dispatch.app import create_app as create_dispatch
from services.escalation.app import ESCALATION
from services.escalation.app import create_app as create_escalation
from services.intake.app import INTAKE
from services.intake.app import create_app as create_intake
from services.ledger.app import LEDGER
from services.ledger.app import create_app as create_ledger
from services.runtime.auth import ROLES, TokenVerifier, issue_token
from services.runtime.service import ServiceDefinition
from services.runtime.settings import SERVICES, Settings

Route = tuple[str, str, str]  # service, method, path

CASE_READERS = frozenset(
    {
        "dispatcher",
        "unit_member",
        "county_supervisor",
        "county_government",
        "legal_reviewer",
        "auditor",
        "admin",
    }
)
CASE_ACTORS = frozenset({"dispatcher", "unit_member", "county_supervisor"})
CONSOLE_USERS = CASE_ACTORS | {"county_government", "legal_reviewer"}
COUNTY = frozenset({"county_supervisor"})
# 准入: the county government approves what the county supervisor proposes; both read the list.
GOVERNMENT = frozenset({"county_government"})
ADMISSION_READERS = COUNTY | GOVERNMENT
# 法制审核: a legal reviewer decides; the county supervisor reads what waits.
LEGAL_REVIEWER = frozenset({"legal_reviewer"})
LEGAL_REVIEW_READERS = LEGAL_REVIEWER | COUNTY
AUDITOR = frozenset({"auditor"})
AUDITOR_OR_COUNTY = frozenset({"auditor", "county_supervisor"})

# 乡镇领导: the township's assessment opinion of its seconded officers (双重考核), no one else's.
TOWNSHIP_LEADER = frozenset({"township_leader"})
MEETING_READERS = frozenset(
    {
        "township_leader",
        "dispatcher",
        "county_department",
        "unit_member",
        "county_supervisor",
        "auditor",
    }
)
STAFF: dict[Route, frozenset[str]] = {
    ("intake", "POST", "/v1/hotline/tickets"): frozenset({"hotline_operator"}),
    ("intake", "POST", "/v1/hotline/follow-ups"): frozenset({"hotline_operator"}),
    ("intake", "POST", "/v1/grid/reports"): frozenset({"grid_worker"}),
    ("intake", "POST", "/v1/admin/tips/{tracking_no}/erasure"): frozenset({"admin"}),
    ("dispatch", "GET", "/v1/cases"): CASE_READERS,
    ("dispatch", "GET", "/v1/cases/{case_id}"): CASE_READERS,
    ("dispatch", "GET", "/v1/cases/{case_id}/tips"): CASE_READERS,
    ("dispatch", "GET", "/v1/reference"): CASE_READERS,
    ("dispatch", "POST", "/v1/cases/{case_id}/assign"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/reject"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/progress"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/resolve"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/evidence"): CASE_ACTORS,
    ("dispatch", "GET", "/v1/cases/{case_id}/evidence"): CASE_READERS,
    ("dispatch", "GET", "/v1/cases/{case_id}/evidence/{sha256}"): CASE_READERS,
    ("dispatch", "POST", "/v1/cases/{case_id}/reopen"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/split"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/accept"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/start"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/close"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/contact"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/whistle"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/cases/{case_id}/assistance"): CASE_ACTORS,
    ("dispatch", "GET", "/v1/queues/triage"): frozenset({"dispatcher", "county_supervisor"}),
    ("dispatch", "GET", "/v1/queues/admission"): COUNTY,
    ("dispatch", "POST", "/v1/cases/{case_id}/admission"): COUNTY,
    ("dispatch", "POST", "/v1/cases/{case_id}/admission/approval"): GOVERNMENT,
    ("dispatch", "GET", "/v1/queues/admission-approval"): ADMISSION_READERS,
    ("dispatch", "POST", "/v1/cases/{case_id}/legal-review"): LEGAL_REVIEWER,
    ("dispatch", "POST", "/v1/assessments"): TOWNSHIP_LEADER,
    # 综合查一次, 定岗巡查: a unit's members, the township's dispatchers and the county read the
    # tasks; only the unit's officer completes one.
    ("dispatch", "GET", "/v1/inspections"): CASE_ACTORS,
    ("dispatch", "POST", "/v1/inspections/{task_id}/completion"): frozenset({"unit_member"}),
    # The sheet: the county, the township's leader and the seconding department (by scope).
    ("ledger", "GET", "/v1/assessments/sheet"): AUDITOR_OR_COUNTY
    | TOWNSHIP_LEADER
    | frozenset({"county_department"}),
    ("dispatch", "GET", "/v1/queues/legal-review"): LEGAL_REVIEW_READERS,
    # 移送: a county department refers a township's matter.
    ("dispatch", "POST", "/v1/referrals"): frozenset({"county_department"}),
    # A summoned department's evidence for its reply to a whistle.
    ("escalation", "POST", "/v1/whistles/{whistle_id}/evidence"): frozenset({"county_department"}),
    ("dispatch", "POST", "/v1/reference/reload"): frozenset({"admin", "county_supervisor"}),
    ("dispatch", "GET", "/v1/console/me"): CONSOLE_USERS,
    ("dispatch", "GET", "/v1/console/triage"): CONSOLE_USERS,
    ("dispatch", "GET", "/v1/console/admission"): COUNTY,
    ("dispatch", "GET", "/v1/console/approval"): ADMISSION_READERS,
    ("dispatch", "GET", "/v1/console/legal-review"): LEGAL_REVIEW_READERS,
    ("dispatch", "GET", "/v1/console/cases"): CONSOLE_USERS,
    ("dispatch", "GET", "/v1/console/cases/{case_id}"): CONSOLE_USERS,
    ("escalation", "GET", "/v1/cases/{case_id}/deadlines"): frozenset(
        {"dispatcher", "county_supervisor", "county_department", "auditor"}
    ),
    ("escalation", "POST", "/v1/cases/{case_id}/extensions"): frozenset({"unit_member"}),
    ("escalation", "POST", "/v1/extensions/{request_id}/decision"): frozenset(
        {"dispatcher", "county_supervisor"}
    ),
    ("escalation", "GET", "/v1/cases/{case_id}/extensions"): frozenset(
        {"unit_member", "dispatcher", "county_supervisor", "auditor"}
    ),
    ("escalation", "POST", "/v1/whistles/{whistle_id}/receipt"): frozenset({"county_department"}),
    ("escalation", "POST", "/v1/whistles/{whistle_id}/reply"): frozenset({"county_department"}),
    ("escalation", "GET", "/v1/whistles"): frozenset(
        {"county_department", "county_supervisor", "township_leader", "dispatcher"}
    ),
    # 联席会议: the township leader convenes and records; the owner department reports done.
    ("escalation", "POST", "/v1/meetings"): TOWNSHIP_LEADER,
    ("escalation", "GET", "/v1/meetings"): MEETING_READERS,
    ("escalation", "GET", "/v1/meetings/{meeting_id}"): MEETING_READERS,
    ("escalation", "POST", "/v1/meetings/{meeting_id}/held"): TOWNSHIP_LEADER,
    ("escalation", "POST", "/v1/meetings/{meeting_id}/decisions"): TOWNSHIP_LEADER,
    ("escalation", "POST", "/v1/meeting-decisions/{decision_id}/done"): frozenset(
        {"county_department"}
    ),
    # ... and a township unit reports its own through dispatch.
    ("dispatch", "GET", "/v1/meeting-decisions"): frozenset(
        {"unit_member", "dispatcher", "county_supervisor"}
    ),
    ("dispatch", "POST", "/v1/meeting-decisions/{decision_id}/done"): frozenset({"unit_member"}),
    ("escalation", "GET", "/v1/calendar"): frozenset(
        {"dispatcher", "county_department", "county_supervisor", "auditor", "unit_member"}
    ),
    ("escalation", "POST", "/v1/calendar/reload"): frozenset({"admin", "county_supervisor"}),
    ("ledger", "GET", "/v1/tree-heads/{size}"): AUDITOR,
    ("ledger", "POST", "/v1/tree-heads"): AUDITOR,
    ("ledger", "GET", "/v1/proofs/inclusion"): AUDITOR,
    ("ledger", "GET", "/v1/proofs/consistency"): AUDITOR,
    ("ledger", "GET", "/v1/export"): AUDITOR,
    ("ledger", "GET", "/v1/cases/{case_id}/trail"): AUDITOR_OR_COUNTY,
    ("ledger", "GET", "/v1/kpis/metrics"): AUDITOR_OR_COUNTY,
    ("ledger", "GET", "/v1/kpis"): AUDITOR_OR_COUNTY,
}

PUBLIC: frozenset[Route] = frozenset(
    {
        # Citizens: tips, their status (tracking number and access code), ratings, uploads.
        ("intake", "POST", "/v1/tips"),
        ("intake", "GET", "/v1/tips/{tracking_no}"),
        ("intake", "POST", "/v1/tips/{tracking_no}/feedback"),
        ("intake", "POST", "/v1/attachments"),
        # WeChat: signed by the official account's token.
        ("intake", "GET", "/wechat/callback"),
        ("intake", "POST", "/wechat/callback"),
        # Open311 GeoReport v2: reads are open, posting takes the client's API key.
        ("intake", "GET", "/open311/v2/discovery.{fmt}"),
        ("intake", "GET", "/open311/v2/services.{fmt}"),
        ("intake", "GET", "/open311/v2/services/{service_code}.{fmt}"),
        ("intake", "POST", "/open311/v2/requests.{fmt}"),
        ("intake", "GET", "/open311/v2/requests.{fmt}"),
        ("intake", "GET", "/open311/v2/requests/{service_request_id}.{fmt}"),
        ("intake", "GET", "/open311/v2/tokens/{token}.{fmt}"),
        # The ledger publishes its latest signed tree head and the key that signs it.
        ("ledger", "GET", "/v1/tree-head"),
        ("ledger", "GET", "/v1/public-key"),
        # Pages: static; what they show comes from the authenticated API.
        ("intake", "GET", "/"),
        ("intake", "GET", "/citizen/citizen.js"),
        ("intake", "GET", "/citizen/citizen.css"),
        ("dispatch", "GET", "/v1/publicity"),
        ("dispatch", "GET", "/publicity"),
        ("dispatch", "GET", "/publicity/publicity.js"),
        ("dispatch", "GET", "/publicity/publicity.css"),
        ("dispatch", "GET", "/console"),
        ("dispatch", "GET", "/console/console.js"),
        ("dispatch", "GET", "/console/console.css"),
        ("escalation", "GET", "/dept"),
        # Where the department page sends referrals: a URL, nothing else.
        ("escalation", "GET", "/v1/referral-target"),
        ("escalation", "GET", "/dept/dept.js"),
        ("escalation", "GET", "/dept/pages.js"),
        ("escalation", "GET", "/dept/dept.css"),
        ("escalation", "GET", "/township"),
        ("escalation", "GET", "/township/township.js"),
        ("escalation", "GET", "/township/pages.js"),
        ("escalation", "GET", "/township/township.css"),
        ("ledger", "GET", "/auditor"),
        ("ledger", "GET", "/auditor/auditor.js"),
        ("ledger", "GET", "/auditor/auditor.css"),
    }
)

DEFINITIONS: tuple[ServiceDefinition, ...] = (INTAKE, DISPATCH, ESCALATION, LEDGER)
FACTORIES = {
    "intake": create_intake,
    "dispatch": create_dispatch,
    "escalation": create_escalation,
    "ledger": create_ledger,
}
EVERY_SCOPE = ("township:*", "dept:*", "unit:*", "grid:*")


def _authenticates(route: APIRoute) -> bool:
    """Whether a route's dependencies (at any depth) include ``require_roles``."""
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if getattr(dependency.call, "__qualname__", "").startswith("require_roles."):
            return True
        pending.extend(dependency.dependencies)
    return False


def _routes() -> dict[Route, bool]:
    """Every route of the services' routers, and whether it takes a bearer token."""
    found: dict[Route, bool] = {}
    for definition in DEFINITIONS:
        for router in definition.routers:
            for route in router.routes:
                assert isinstance(route, APIRoute), f"{definition.name}: {route!r}"
                for method in route.methods - {"HEAD"}:
                    found[(definition.name, method, route.path)] = _authenticates(route)
    return found


def test_the_table_names_every_route() -> None:
    found = _routes()
    authenticated = {route for route, takes_token in found.items() if takes_token}
    public = {route for route, takes_token in found.items() if not takes_token}
    assert set(STAFF) == authenticated, "a staff route without its row, or a row without route"
    assert public == PUBLIC, "a public route not listed as public, or a listed one gone"
    for route, allowed in STAFF.items():
        assert allowed and allowed <= set(ROLES), route


@dataclass(frozen=True)
class _StubRuntime:
    """What a request needs of the runtime until its token is refused."""

    verifier: TokenVerifier
    settings: Settings
    draining: bool = False


@pytest.fixture(scope="module")
def apps(settings: Settings) -> dict[str, FastAPI]:
    built = {}
    for name, factory in FACTORIES.items():
        verifier = TokenVerifier(
            settings.public_key_path.read_bytes(),
            issuer=settings.jwt_issuer,
            audience=settings.audience_of(name),
        )
        app = factory(settings)
        app.state.runtime = _StubRuntime(verifier, settings)
        built[name] = app
    return built


def _url(path: str) -> str:
    return re.sub(
        r"\{[^}]+\}",
        lambda m: "1" if m.group(0) == "{size}" else "00000000-0000-4000-8000-000000000001",
        path,
    )


async def _call(app: FastAPI, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        body: dict[str, Any] | None = {} if method in {"POST", "PUT", "PATCH"} else None
        return await client.request(method, _url(path), json=body, headers=headers)


def _token(settings: Settings, role: str, **overrides: Any) -> str:
    claims: dict[str, Any] = {
        "subject": f"table-{role}",
        "roles": [role],
        "scopes": list(EVERY_SCOPE),
        "issuer": settings.jwt_issuer,
        "audience": settings.audiences(),
        "now": datetime.now(UTC),
    }
    claims.update(overrides)
    key = claims.pop("key", settings.private_key_path.read_bytes())
    return issue_token(key, **claims)


def _foreign_key() -> bytes:
    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.mark.parametrize("route", sorted(STAFF), ids=" ".join)
async def test_a_staff_route_refuses_whoever_it_must(
    apps: dict[str, FastAPI], settings: Settings, route: Route
) -> None:
    service, method, path = route
    app = apps[service]
    allowed = STAFF[route]
    someone = sorted(allowed)[0]
    invalid = {
        "no token": None,
        "not bearer": f"Basic {_token(settings, someone)}",
        "malformed": "Bearer not.a.token",
        "expired": _token(settings, someone, now=datetime.now(UTC) - timedelta(hours=13)),
        "another audience": _token(settings, someone, audience="someone-else"),
        "the other services' audiences": _token(
            settings, someone, audience=settings.audiences(s for s in SERVICES if s != service)
        ),
        "another issuer": _token(settings, someone, issuer="https://elsewhere.example"),
        "a foreign key": _token(settings, someone, key=_foreign_key()),
    }
    for why, credential in invalid.items():
        headers = {"authorization": credential} if credential else {}
        if credential and not credential.startswith(("Bearer", "Basic")):
            headers["authorization"] = f"Bearer {credential}"
        answer = await _call(app, method, path, headers)
        assert answer.status_code == 401, f"{why}: {answer.text}"
        assert answer.headers["content-type"].startswith("application/problem+json"), why
        assert answer.headers.get("www-authenticate") == "Bearer", why
    for role in ROLES:
        headers = {"authorization": f"Bearer {_token(settings, role)}"}
        answer = await _call(app, method, path, headers)
        if role in allowed:
            assert answer.status_code not in {401, 403}, f"{role} refused: {answer.text}"
        else:
            assert answer.status_code == 403, f"{role} let through: {answer.status_code}"
            assert answer.headers["content-type"].startswith("application/problem+json")
