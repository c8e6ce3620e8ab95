"""Evidence that holds (issue #14, item 5), through dispatch's HTTP API on the sample county's
data: a step cites only files uploaded as evidence of its case (an unknown hash, or one stored
for another case, is refused 422 naming it, and nothing of the step is kept); each step on the
ground records who acted, their 执法证 number checked valid on the step's date, the place and the
time; an officer whose certificate expired the day before may not act on a penalty matter.

Dispatch runs on a clock of the test's own: 2028-11-23 in the county, the day after 闫斌's
(S0090) certificate ran out, while 宋晓丽's (S0089) runs until 2029."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import func, select
from uuid6 import uuid7

from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case, CaseEvidence, CaseTimelineEntry
from services.dispatch.retention import erase_tip
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock, _in_process
from tests.support.files import pdf, png
from tests.support.infra import eventually
from tests.support.tips import OFFICER, act, bearer, case_events

PROBLEM = "application/problem+json"
# 10:00 on 2028-11-23 in the county (UTC+8).
NOW = datetime(2028, 11, 23, 2, 0, tzinfo=UTC)
EXPIRED = "S0090"  # 闫斌: 晋执字14099920230086, valid until 2028-11-22
CERTIFICATE = "晋执字14099920240085"  # 宋晓丽's (S0089)


@pytest.fixture(scope="module")
def clock() -> MovableClock:
    return MovableClock(NOW)


@pytest.fixture(scope="module")
async def dispatch_then(
    migrated: Settings, clock: MovableClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    async for pair in _in_process(create_dispatch(migrated, clock)):
        yield pair


async def _case(runtime: Runtime, matter: str = "CG-001", unit: str = "T03-CGJ") -> UUID:
    """A case of 城关镇五里铺村 (grid T03V02G01) in progress with ``unit``."""
    case = Case(
        id=uuid7(),
        tip_id=uuid7(),
        county="140999",
        status="in_progress",
        matter_code=matter,
        township_code="T03",
        village_code="T03V02",
        grid_id="T03V02G01",
        urgency="general",
        unit_id=unit,
        catalogue_version="test",
        created_at=NOW,
        updated_at=NOW,
    )
    async with runtime.transaction() as session:
        session.add(case)
    return case.id


def _officer(token: TokenFactory, subject: str = OFFICER) -> dict[str, str]:
    return bearer(token, "unit_member", "unit:T03-CGJ", subject=subject)


async def _upload(
    client: httpx.AsyncClient, case_id: UUID, headers: dict[str, str], body: bytes
) -> httpx.Response:
    return await client.post(
        f"/v1/cases/{case_id}/evidence", files={"file": ("photo", body)}, headers=headers
    )


async def _version(runtime: Runtime, case_id: UUID) -> int:
    async with runtime.sessions() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        return case.version


async def test_a_step_citing_a_file_never_stored_is_refused_and_nothing_is_kept(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    officer = _officer(token)
    photo = await _upload(client, case_id, officer, png(1))
    assert photo.status_code == 201, photo.text
    never = hashlib.sha256(b"never uploaded").hexdigest()

    for action, body in (
        ("progress", {"note": "已到现场", "evidence": [photo.json()["id"], never]}),
        ("resolve", {"resolution": "rectified", "note": "责令整改", "evidence": [never]}),
    ):
        if action == "resolve":
            body["rectification_due"] = "2028-11-30"
        refused = await act(client, case_id, action, officer, body)
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == PROBLEM
        problem = refused.json()
        assert (problem["type"], problem["title"], problem["unknown"]) == (
            "https://whistle.example/problems/unknown-evidence",
            "证据文件不存在",
            [never],
        )
        assert never in problem["detail"] and "本步骤未保存" in problem["detail"]
    # Nothing of either step was kept: the case's version, and no event.
    assert await _version(runtime, case_id) == 1
    assert await case_events(runtime, case_id) == []


async def test_a_file_stored_for_another_case_is_not_evidence_of_this_one(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_then
    mine, other = await _case(runtime), await _case(runtime)
    officer = _officer(token)
    elsewhere = (await _upload(client, other, officer, png(2))).json()["id"]
    refused = await act(
        client, mine, "progress", officer, {"note": "现场照片", "evidence": [elsewhere]}
    )
    assert refused.status_code == 422 and refused.json()["unknown"] == [elsewhere]
    # Uploaded for this case too, the same bytes are one file and now its evidence.
    again = await _upload(client, mine, officer, png(2))
    assert (again.status_code, again.json()["id"]) == (201, elsewhere)
    assert (await _upload(client, mine, officer, png(2))).status_code == 200
    cited = await act(
        client, mine, "progress", officer, {"note": "现场照片", "evidence": [elsewhere]}
    )
    assert cited.status_code == 200, cited.text


async def test_a_step_records_the_officer_the_certificate_the_place_and_the_evidence(
    dispatch_then: tuple[httpx.AsyncClient, Runtime],
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    officer = _officer(token)
    photo = (await _upload(client, case_id, officer, png(3))).json()
    record = await _upload(client, case_id, officer, pdf())
    assert record.status_code == 201, record.text
    assert record.json()["content_type"] == "application/pdf"
    assert photo["content_type"] == "image/png"

    point = {"lat": 38.7612, "lon": 113.2251}
    progressed = await act(
        client,
        case_id,
        "progress",
        officer,
        {"note": "已到现场，摊主已收摊", "evidence": [photo["id"]], "point": point},
    )
    assert progressed.status_code == 200, progressed.text
    resolved = await act(
        client,
        case_id,
        "resolve",
        officer,
        {
            "resolution": "penalised",
            "note": "依法罚款500元",
            "penalty": {"kinds": ["fine"], "fine_yuan": 500},
            "evidence": [photo["id"], record.json()["id"]],
        },
    )
    assert resolved.status_code == 200, resolved.text
    progress, resolution = await case_events(runtime, case_id)

    def on_the_ground(event: dict[str, Any]) -> dict[str, Any]:
        keys = ("actor", "certificate_number", "grid_id", "point", "acted_at")
        return {k: event["data"][k] for k in keys}

    at = NOW.isoformat().replace("+00:00", "Z")
    assert on_the_ground(progress) == {
        "actor": OFFICER,
        "certificate_number": CERTIFICATE,
        "grid_id": "T03V02G01",
        "point": point,
        "acted_at": at,
    }
    assert progress["data"]["evidence"] == [photo["id"]]
    # No point given: the case's grid is the place.
    assert on_the_ground(resolution) == {**on_the_ground(progress), "point": None}
    assert resolution["data"]["evidence"] == [photo["id"], record.json()["id"]]

    # Whoever reads the case lists its evidence and fetches each file.
    dispatcher = bearer(token, "dispatcher", "township:T03")
    listed = await client.get(f"/v1/cases/{case_id}/evidence", headers=dispatcher)
    # (Both uploaded at the test clock's one instant: then in the order of their hashes.)
    assert [e["id"] for e in listed.json()] == sorted([photo["id"], record.json()["id"]])
    assert {e["uploaded_by"] for e in listed.json()} == {OFFICER}
    fetched = await client.get(f"/v1/cases/{case_id}/evidence/{photo['id']}", headers=dispatcher)
    assert fetched.status_code == 200
    assert (fetched.headers["content-type"], fetched.content) == ("image/png", png(3))
    # The ledger's trail of the case records the step as it was taken.
    auditor = bearer(token, "auditor")

    async def in_the_trail() -> dict[str, Any] | None:
        answer = await ledger.get(f"/v1/cases/{case_id}/trail", headers=auditor)
        entries = answer.json()["entries"] if answer.is_success else []
        return next((e for e in entries if e["event"]["type"] == progress["type"]), None)

    entry = await eventually(in_the_trail, what="the progress step in the ledger")
    recorded = entry["event"]
    # The point is personal (where a citizen's problem is): sealed, opened for the auditor.
    assert "x-sealed" in recorded["data"]["point"]
    assert entry["personal"]["point"] == point
    assert on_the_ground(recorded) == {
        **on_the_ground(progress),
        "point": recorded["data"]["point"],
    }
    assert recorded["data"]["evidence"] == [photo["id"]]
    foreign = bearer(token, "dispatcher", "township:T01")
    assert (
        await client.get(f"/v1/cases/{case_id}/evidence/{photo['id']}", headers=foreign)
    ).status_code == 404


async def test_a_certificate_expired_on_the_steps_date_is_refused_on_a_penalty_matter(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    expired = _officer(token, EXPIRED)
    refused = await act(client, case_id, "progress", expired, {"note": "已到现场"})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert (problem["type"], problem["title"]) == (
        "https://whistle.example/problems/no-valid-certificate",
        "无有效执法证",
    )
    assert problem["detail"] == (
        "闫斌（S0090）的执法证 晋执字14099920230086 有效期为2023-11-23至2028-11-22，"
        "2028-11-23不在有效期内，不得办理行政处罚事项（占道经营、出店经营）的执法步骤："
        "须由持有效执法证的执法人员办理。"
    )
    # An account that is no officer at all is refused the same way.
    nobody = await act(client, case_id, "progress", _officer(token, "test-account"), {"note": "x"})
    assert nobody.status_code == 422 and "不在执法人员名录中" in nobody.json()["detail"]
    assert await _version(runtime, case_id) == 1
    assert await case_events(runtime, case_id) == []


async def test_a_service_request_needs_no_certificate(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_then
    # 路灯不亮 (GF-001): a public-service request of 城关镇城建办.
    case_id = await _case(runtime, "GF-001", "T03-CJB")
    worker = bearer(token, "unit_member", "unit:T03-CJB", subject="test-electrician")
    done = await act(client, case_id, "progress", worker, {"note": "已更换灯泡"})
    assert done.status_code == 200, done.text
    [event] = await case_events(runtime, case_id)
    assert (event["data"]["actor"], event["data"]["certificate_number"]) == (
        "test-electrician",
        None,
    )


async def test_only_who_may_act_on_the_case_uploads_and_a_refused_upload_keeps_nothing(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    other_unit = bearer(token, "unit_member", "unit:T01-CGJ", subject=OFFICER)
    assert (await _upload(client, case_id, other_unit, png(4))).status_code == 404
    text = await _upload(client, case_id, _officer(token), b"not a photo at all" * 100)
    assert text.status_code == 415 and text.headers["content-type"] == PROBLEM
    async with runtime.sessions() as session:
        rows = await session.scalar(
            select(func.count()).select_from(CaseEvidence).where(CaseEvidence.case_id == case_id)  # type: ignore[arg-type]
        )
    assert rows == 0


async def test_erasing_the_tip_erases_where_the_officer_stood(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    """The point of a step is where the citizen's problem is: erased with the tip's place."""
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    point = {"lat": 38.7612, "lon": 113.2251}
    done = await act(client, case_id, "progress", _officer(token), {"note": "到场", "point": point})
    assert done.status_code == 200, done.text

    async def on_the_timeline() -> CaseTimelineEntry | None:
        async with runtime.sessions() as session:
            return await session.scalar(
                select(CaseTimelineEntry).where(CaseTimelineEntry.case_id == case_id)  # type: ignore[arg-type]
            )

    entry = await eventually(on_the_timeline, what="the step on dispatch's timeline")
    assert entry.data["point"] == point
    async with runtime.transaction() as session:
        case = await session.get(Case, case_id)
        assert case is not None
        await erase_tip(session, case.tip_id)
    async with runtime.sessions() as session:
        kept = await session.get(CaseTimelineEntry, (entry.source, entry.event_id))
    assert kept is not None and "point" not in kept.data
    assert kept.data["grid_id"] == "T03V02G01"  # the grid is no one's place


async def test_a_major_decision_keeps_its_evidence_officer_and_place_through_legal_review(
    dispatch_then: tuple[httpx.AsyncClient, Runtime], clock: MovableClock, token: TokenFactory
) -> None:
    """A fine above 10000 yuan waits for legal review: held, it cites only stored evidence;
    approved a day later, the resolution carries the decision's officer, certificate, place
    and time, not the reviewer's."""
    client, runtime = dispatch_then
    case_id = await _case(runtime)
    officer = _officer(token)
    photo = (await _upload(client, case_id, officer, png(41))).json()["id"]
    point = {"lat": 38.7601, "lon": 113.2249}
    major: dict[str, Any] = {
        "resolution": "penalised",
        "note": "依法罚款20000元",
        "penalty": {"kinds": ["fine"], "fine_yuan": 20000},
        "point": point,
    }
    never = hashlib.sha256(b"no such record").hexdigest()
    refused = await act(client, case_id, "resolve", officer, {**major, "evidence": [never]})
    assert refused.status_code == 422 and refused.json()["unknown"] == [never]
    held = await act(client, case_id, "resolve", officer, {**major, "evidence": [photo]})
    assert held.status_code == 200 and held.json()["status"] == "legal_review", held.text
    try:
        clock.advance(timedelta(days=1))
        approved = await act(
            client,
            case_id,
            "legal-review",
            bearer(token, "legal_reviewer"),
            {"decision": "approve"},
        )
        assert approved.status_code == 200, approved.text
    finally:
        clock.now = NOW
    requested, _, resolved = await case_events(runtime, case_id)
    assert requested["type"] == "whistle.case.legal_review_requested"
    expected = {
        "actor": OFFICER,
        "certificate_number": CERTIFICATE,
        "grid_id": "T03V02G01",
        "point": point,
        "acted_at": NOW.isoformat().replace("+00:00", "Z"),
        "evidence": [photo],
    }
    for event in (requested, resolved):
        assert {k: event["data"][k] for k in expected} == expected
    assert resolved["type"] == "whistle.case.resolved"
    assert resolved["time"] != resolved["data"]["acted_at"]  # in effect on approval
