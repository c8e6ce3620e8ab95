"""Reloading the reference data without a restart: by HTTP and by SIGHUP; a bad reload keeps
the version in force, and routing records whichever version is in force at that moment."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import yaml

from services.dispatch.inspection_service import InspectionScheduler
from services.dispatch.wiring import current_counties
from services.runtime.service import Runtime
from tests.conftest import TokenFactory
from tests.integration.conftest import MovableClock
from tests.support.infra import eventually
from tests.support.tips import case_events, case_of, send_tip


def _edit(config_dir: Path, name: str, edit) -> None:
    path = config_dir / name
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(doc)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _catalogue_version(version: str):
    def edit(doc: dict) -> None:
        doc["version"] = version

    return edit


async def test_reload_puts_the_new_version_in_force_for_the_next_routing_decision(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    before = (await client.get("/v1/reference", headers=admin)).json()
    assert before["catalogue_version"] == "2026.11-1"
    assert before["whistle_rules_placeholder"] is True

    _edit(config_dir, "catalogue.yaml", _catalogue_version("2027.01-reload"))
    answer = await client.post("/v1/reference/reload", headers=admin)
    assert answer.status_code == 200, answer.text
    version = answer.json()["version"]
    assert version.startswith("2027.01-reload+") and version != before["version"]
    assert (await client.get("/v1/reference", headers=admin)).json()["version"] == version

    tip_id = await send_tip(runtime, "店门口占道经营", "T03V02G01", hint="CG-001")
    case = await case_of(runtime, tip_id)
    assert case.catalogue_version == version
    opened, assigned = (await case_events(runtime, case.id))[:2]
    assert opened["data"]["catalogue_version"] == version
    assert assigned["data"]["catalogue_version"] == version


async def test_a_bad_reload_is_refused_with_its_reasons_and_the_old_version_stays(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    token: TokenFactory,
) -> None:
    client, _ = dispatch_with_own_config
    supervisor = {"authorization": f"Bearer {token('county_supervisor', 'township:*')}"}
    in_force = (await client.get("/v1/reference", headers=supervisor)).json()["version"]
    good_claims = (config_dir / "claims.yaml").read_bytes()
    good_rules = (config_dir / "whistle_rules.yaml").read_bytes()

    def break_claims(doc: dict) -> None:
        doc["claims"][0]["township"] = "T99"

    def break_rules(doc: dict) -> None:
        doc["automatic_reason"] = "whenever"

    _edit(config_dir, "claims.yaml", break_claims)
    _edit(config_dir, "whistle_rules.yaml", break_rules)
    try:
        answer = await client.post("/v1/reference/reload", headers=supervisor)
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"
        problem = answer.json()
        assert "claims: unknown township 'T99'" in problem["reasons"]
        assert any(r.startswith("whistle_rules.yaml: automatic_reason") for r in problem["reasons"])
        assert problem["version_in_force"] == in_force
        still = (await client.get("/v1/reference", headers=supervisor)).json()["version"]
        assert still == in_force
    finally:
        (config_dir / "claims.yaml").write_bytes(good_claims)
        (config_dir / "whistle_rules.yaml").write_bytes(good_rules)


async def test_only_the_county_may_reload(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime], token: TokenFactory
) -> None:
    client, _ = dispatch_with_own_config
    dispatcher = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}
    assert (await client.post("/v1/reference/reload", headers=dispatcher)).status_code == 403


async def test_sighup_reloads(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    token: TokenFactory,
) -> None:
    client, _ = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    _edit(config_dir, "catalogue.yaml", _catalogue_version("2027.02-hup"))
    os.kill(os.getpid(), signal.SIGHUP)

    async def reloaded() -> bool:
        view = (await client.get("/v1/reference", headers=admin)).json()
        return view["catalogue_version"] == "2027.02-hup"

    assert await eventually(reloaded, what="the SIGHUP reload")


async def test_a_reload_moves_a_townships_inspection_day_for_the_next_planning(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    token: TokenFactory,
) -> None:
    """综合查一次 (issue #15, item 6): 台城镇 (T05) moves its day from Tuesday to Thursday; once
    reloaded, the planner plans it on a Thursday, and a plan naming an unknown unit is refused
    with the plans in force kept."""
    client, runtime = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    thursday = MovableClock(datetime(2027, 6, 10, 1, 0, tzinfo=UTC))  # 09:00 in the county
    planner = InspectionScheduler(
        runtime.sessions,
        lambda: current_counties(runtime).values(),
        thursday,
        runtime.settings.timezone,
        interval_seconds=3600,
    )
    assert not any(t.plan_id == "JOINT-T05" for t in await planner.run_once())

    def thursdays(doc: dict) -> None:
        doc["joint_inspection_days"].append({"township": "T05", "weekday": "thursday"})

    _edit(config_dir, "inspections.yaml", thursdays)
    assert (await client.post("/v1/reference/reload", headers=admin)).status_code == 200
    thursday.advance(timedelta(days=7))
    planned = await planner.run_once()
    assert {t.unit_id for t in planned if t.plan_id == "JOINT-T05"} >= {"T05-TEAM", "T05-SCJGJ"}

    def unknown_unit(doc: dict) -> None:
        doc["joint_inspection_days"][-1]["units"] = ["T05-NOPE"]

    _edit(config_dir, "inspections.yaml", unknown_unit)
    refused = await client.post("/v1/reference/reload", headers=admin)
    assert refused.status_code == 422
    assert any("T05-NOPE" in reason for reason in refused.json()["reasons"]), refused.json()
    _edit(config_dir, "inspections.yaml", lambda doc: doc["joint_inspection_days"].pop())
