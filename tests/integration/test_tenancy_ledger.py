"""Tenancy's second step in the ledger (issue 18, item 4; docs/scale.md, "Tenancy"): intake,
dispatch and the ledger in process over the shipped reference data, 清溪县 (140999, the
default) and 桃林县 (140998). The ledger keeps one Merkle log for both, and each entry's county;
a county's auditor or supervisor reads only its county's trails, KPIs and proofs — another
county's case or entry is 404, as dispatch answers — while the city's ``county:*`` reads all."""

from __future__ import annotations

import json
from datetime import date
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from contracts.envelope import CloudEvent
from contracts.events import CaseChased
from services.ledger.heads import load_public_key
from services.ledger.kpi_store import GROUP_BYS, CountyScope, GroupBy, tally
from services.ledger.kpis import period_of
from services.ledger.merkle import canonical_bytes, leaf_hash
from services.ledger.verify import verify_export
from services.runtime.db import Sessions, create_engine, ensure_database
from services.runtime.migrations import upgrade
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration import test_kpis as scripted
from tests.integration.test_kpis import sessions
from tests.integration.test_tenancy import IN_QINGXI, IN_TAOLIN, QINGXI, TAOLIN, _bearer, _tip
from tests.support.infra import Infra, eventually
from tests.support.tips import case_of

PROBLEM = "application/problem+json"
__all__ = ["sessions"]  # a fresh ledger database per test, as the KPI tests use


async def _trail(
    ledger: httpx.AsyncClient, headers: dict[str, str], case_id: UUID
) -> dict[str, Any] | None:
    """The case's trail once its opening is recorded (None until then)."""
    answer = await ledger.get(f"/v1/cases/{case_id}/trail", headers=headers)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    opened = any(e["type"] == "whistle.case.opened" for e in body["entries"])
    return body if opened else None


async def _kpi_groups(ledger: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, Any]:
    answer = await ledger.get("/v1/kpis", params={"group_by": "county"}, headers=headers)
    assert answer.status_code == 200, answer.text
    return {group["key"]: group for group in answer.json()["groups"]}


async def test_each_countys_auditor_reads_only_its_own_county_in_the_one_log(
    intake: tuple[httpx.AsyncClient, Runtime],
    dispatch: tuple[httpx.AsyncClient, Runtime],
    ledger: httpx.AsyncClient,
    token: TokenFactory,
) -> None:
    citizen, _ = intake
    _, dispatch_runtime = dispatch
    tips = {QINGXI: await _tip(citizen, IN_QINGXI), TAOLIN: await _tip(citizen, IN_TAOLIN)}
    cases = {c: (await case_of(dispatch_runtime, UUID(t["tip_id"]))).id for c, t in tips.items()}

    city = _bearer(token("auditor", "county:*"))
    trails = {
        county: await eventually(
            lambda case_id=case_id: _trail(ledger, city, case_id),  # type: ignore[misc]
            what=f"{county}'s case opened in the ledger",
        )
        for county, case_id in cases.items()
    }
    # One log for both counties: every entry of a case names the case's county.
    for county, trail in trails.items():
        assert {entry["event"].get("county") for entry in trail["entries"]} == {county}
    head = await ledger.post("/v1/tree-heads", headers=city)
    assert head.status_code in (200, 201), head.text
    size = head.json()["tree_size"]
    # The entries the head covers (recorded before it): those a proof and the export show.
    covered = {
        county: [
            entry
            for entry in (await ledger.get(f"/v1/cases/{case_id}/trail", headers=city)).json()[
                "entries"
            ]
            if entry["inclusion_path"] is not None
        ]
        for county, case_id in cases.items()
    }

    # 清溪县's auditor holds a token from before tenancy (no county: the default county's);
    # 桃林县's supervisor names its county.
    readers = {
        QINGXI: _bearer(token("auditor")),
        TAOLIN: _bearer(token("county_supervisor", f"county:{TAOLIN}")),
    }
    for county, headers in readers.items():
        other = TAOLIN if county == QINGXI else QINGXI
        own = await ledger.get(f"/v1/cases/{cases[county]}/trail", headers=headers)
        assert own.status_code == 200, own.text
        shown = own.json()["entries"]
        assert {e["seq"] for e in covered[county]} <= {e["seq"] for e in shown}
        assert {e["event"].get("county") for e in shown} == {county}
        refused = await ledger.get(f"/v1/cases/{cases[other]}/trail", headers=headers)
        assert refused.status_code == 404, refused.text
        assert refused.headers["content-type"].startswith(PROBLEM)
        # The KPIs count the reader's county alone, keyed by its division code.
        groups = await _kpi_groups(ledger, headers)
        assert set(groups) == {county}
        assert groups[county]["counts"]["opened"] >= 1
    # The city sees both counties side by side.
    assert {QINGXI, TAOLIN} <= set(await _kpi_groups(ledger, city))

    # A proof of another county's entry is 404 to a one-county auditor; its own is proved.
    taolin_auditor = _bearer(token("auditor", f"county:{TAOLIN}"))
    for county, status in ((TAOLIN, 200), (QINGXI, 404)):
        seq = covered[county][0]["seq"]
        proof = await ledger.get(
            "/v1/proofs/inclusion", params={"seq": seq, "size": size}, headers=taolin_auditor
        )
        assert proof.status_code == status, proof.text
    # The city's auditor proves any entry of the one log.
    seq = covered[QINGXI][0]["seq"]
    proof = await ledger.get(
        "/v1/proofs/inclusion", params={"seq": seq, "size": size}, headers=city
    )
    assert proof.status_code == 200, proof.text

    # The export is the one log's: to 桃林县's auditor, 清溪县's entries are withheld (their
    # leaves only), and the offline verifier still recomputes the signed root from every leaf.
    exported = await ledger.get("/v1/export", headers=taolin_auditor)
    assert exported.status_code == 200, exported.text
    lines = exported.content.splitlines()
    by_seq = {line["seq"]: line for line in map(json.loads, lines[1:])}
    for entry in covered[QINGXI]:
        assert by_seq[entry["seq"]] == {
            "seq": entry["seq"],
            "leaf_hash": entry["leaf_hash"],
            "canonical": None,
            "withheld": True,
        }
    assert all(by_seq[e["seq"]]["canonical"] == e["canonical"] for e in covered[TAOLIN])
    key = load_public_key((await ledger.get("/v1/public-key")).content)
    report = verify_export(lines, key)
    assert report.ok, report.render()
    assert report.withheld >= len(covered[QINGXI])


async def test_every_kpi_figure_counts_only_the_readers_counties(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scripted month of tests/integration/test_kpis.py — cases, 退单, clocks — with a
    rating and chases, every event 桃林县's: 清溪县's reader counts none of it in any grouping,
    桃林县's counts all of it, as the city does, under its division code."""

    record = scripted.record

    async def in_taolin(into: Sessions, events: list[CloudEvent]) -> None:
        await record(into, [e.model_copy(update={"county": TAOLIN}) for e in events])

    monkeypatch.setattr(scripted, "record", in_taolin)
    cases = await scripted.record_the_scripted_cases(sessions)
    g = cases["D"]
    await in_taolin(
        sessions,
        [
            scripted.rated(g, g.tip_id, "satisfied", scripted.at(16)),
            scripted.ladder(g, CaseChased, scripted.at(9), "resolution"),
        ],
    )
    month = period_of("month", date(2026, 12, 20))

    async def counted(group_by: GroupBy, readable: frozenset[str] | None) -> dict[Any, Any]:
        county = CountyScope(QINGXI, readable)
        async with sessions() as session:
            result = await tally(
                session, month, group_by, scripted.NOW, "Asia/Shanghai", {}, county
            )
        return {key: counts.as_dict() for key, counts in result.counts.items()}

    for group_by in GROUP_BYS:
        assert await counted(group_by, frozenset({QINGXI})) == {}, group_by
        assert await counted(group_by, frozenset({TAOLIN})) == await counted(group_by, None)
    [(key, counts)] = (await counted("county", frozenset({TAOLIN}))).items()
    assert key == TAOLIN
    assert counts["opened"] == 5 and counts["rejections"] == 1
    assert counts["rated"] == 1 and counts["chases"] == 1


async def test_the_entries_recorded_before_keep_the_county_their_bytes_name(infra: Infra) -> None:
    """ledger_0014 on a log recorded since tenancy's first step: each entry's county column is
    read from its committed bytes (none for an entry naming none), its case's KPI facts get it
    too, and the log stays append-only afterwards."""
    url = infra.fresh_database_url("ledger")
    await ensure_database(url)
    await upgrade("ledger", url, "ledger_0012_inspections")
    case_id = uuid4()
    entries = [
        canonical_bytes({"id": "0", "subject": str(case_id)}),
        canonical_bytes({"county": TAOLIN, "id": "1", "subject": str(case_id)}),
    ]
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            # As the recorder wrote them before ledger_0014: no county column yet.
            rows = [
                {
                    "n": n,
                    "id": str(n),
                    "entry": entry,
                    "leaf": leaf_hash(entry),
                    "case": str(case_id),
                }
                for n, entry in enumerate(entries)
            ]
            await conn.execute(
                text(
                    "INSERT INTO ledger_entry (seq, source, event_id, type, subject, topic, "
                    "event_time, recorded_at, canonical, leaf_hash) SELECT :n, 's', "
                    ":id, 't', :case, 'topic', now(), now(), :entry, :leaf"
                ),
                rows,
            )
            await conn.execute(
                text("INSERT INTO kpi_case (case_id, reopened, rejections) VALUES (:c, 0, 0)"),
                {"c": case_id},
            )
        await upgrade("ledger", url, county=QINGXI)
        async with engine.connect() as conn:
            counties = (
                await conn.execute(text("SELECT county FROM ledger_entry ORDER BY seq"))
            ).scalars()
            assert list(counties) == [None, TAOLIN]
            kpi = await conn.scalar(text("SELECT county FROM kpi_case"))
            assert kpi == TAOLIN
        with pytest.raises(DBAPIError, match="append-only"):
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE ledger_entry SET county = NULL"))
    finally:
        await engine.dispose()
