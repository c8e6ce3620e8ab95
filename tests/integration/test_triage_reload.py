"""The triage model in a running dispatch: tips in everyday words are routed by it, every
explanation names its version, and past tickets imported with ``whistle triage train`` are
learned on the next reference reload, without a restart."""

from __future__ import annotations

import csv
from pathlib import Path

import httpx

from contracts.cases import CaseStatus
from services.dispatch.training import train
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.tips import case_events, case_of, send_tip
from tests.unit.test_triage_model import BIKES

GRID = "T03V02G01"


async def test_everyday_words_are_routed_and_a_history_import_is_learned_on_reload(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    migrated: Settings,
    token: TokenFactory,
    tmp_path: Path,
) -> None:
    client, runtime = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    before = (await client.get("/v1/reference", headers=admin)).json()
    version = before["triage_model_version"]
    assert version.startswith("triage-") and before["triage_model_examples"] == 1123

    # No keyword of 拖欠农民工工资 in it, yet routed, and the explanation says by what.
    case = await case_of(runtime, await send_tip(runtime, "包工头欠了我们一年的钱", GRID))
    assert case.matter_code == "LD-001" and case.status == CaseStatus.ASSIGNED
    opened = (await case_events(runtime, case.id))[0]["data"]
    assert any(line.startswith(f"分类模型 {version}：LD-001") for line in opened["explanation"])

    bikes = "学校门口的共享单车乱停乱放 孩子都没地方走"
    waiting = await case_of(runtime, await send_tip(runtime, bikes, GRID))
    assert waiting.status == CaseStatus.TRIAGE
    triage_required = (await case_events(runtime, waiting.id))[1]["data"]
    assert "候选：" in triage_required["reason"]

    history = tmp_path / "tickets.csv"
    with history.open("w", newline="", encoding="utf-8") as out:
        csv.writer(out).writerows([("text", "matter"), *((text, "CG-001") for text in BIKES)])
    trained = train(config_dir, migrated.triage_confidence_threshold, history)
    assert trained.added == len(BIKES)

    answer = await client.post("/v1/reference/reload", headers=admin)
    assert answer.status_code == 200, answer.text
    learned = answer.json()["triage_model_version"]
    assert learned != version and answer.json()["triage_model_examples"] == 1123 + len(BIKES)

    again = await case_of(runtime, await send_tip(runtime, bikes, GRID))
    assert again.matter_code == "CG-001" and again.status == CaseStatus.ASSIGNED
    opened = (await case_events(runtime, again.id))[0]["data"]
    assert any(line.startswith(f"分类模型 {learned}：CG-001") for line in opened["explanation"])


async def test_invalid_labelled_tips_are_refused_and_the_model_in_force_stays(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    token: TokenFactory,
) -> None:
    client, _ = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    in_force = (await client.get("/v1/reference", headers=admin)).json()
    learned = config_dir / "triage" / "learned.csv"
    learned.write_text("text,matter\n路灯坏了,XX-999\n", encoding="utf-8")
    try:
        answer = await client.post("/v1/reference/reload", headers=admin)
        assert answer.status_code == 422
        assert answer.headers["content-type"] == "application/problem+json"
        reasons = answer.json()["reasons"]
        assert "triage/learned.csv:2: matter 'XX-999' is not in the catalogue" in reasons
        still = (await client.get("/v1/reference", headers=admin)).json()
        assert still["triage_model_version"] == in_force["triage_model_version"]
    finally:
        learned.unlink()
