"""Learning from the console: a dispatcher's classification of a tip triage was unsure of is
recorded with the tip's words, and after ``whistle triage train`` and a reload the next
similar tip is classified as the dispatcher did."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy import select

from contracts.cases import CaseStatus
from services.dispatch.models import TriageLabel
from services.dispatch.training import labelled_by_dispatchers, train
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.support.tips import case_events, case_of, send_tip

GRID = "T03V02G01"


async def test_a_dispatchers_correction_changes_the_next_similar_tip_after_training(
    dispatch_with_own_config: tuple[httpx.AsyncClient, Runtime],
    config_dir: Path,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    client, runtime = dispatch_with_own_config
    admin = {"authorization": f"Bearer {token('admin')}"}
    dispatcher = {"authorization": f"Bearer {token('dispatcher', 'township:T03')}"}

    words = "学校门口的共享单车乱停乱放 孩子都没地方走"
    waiting = await case_of(runtime, await send_tip(runtime, words, GRID))
    assert waiting.status == CaseStatus.TRIAGE and waiting.matter_code != "CG-001"
    answer = await client.post(
        f"/v1/cases/{waiting.id}/assign",
        json={"unit_id": "T03-CGJ", "matter_code": "CG-001"},
        headers={**dispatcher, "If-Match": f'"{waiting.version}"'},
    )
    assert answer.status_code == 200, answer.text

    # The database is shared with other modules' dispatchers: this test learns its own label.
    async with runtime.sessions() as session:
        labels = (
            await session.scalars(select(TriageLabel).where(TriageLabel.case_id == waiting.id))
        ).all()
        learned = [e for e in await labelled_by_dispatchers(session) if e.text == words]
    assert [(x.text, x.matter_code, x.suggested) for x in labels] == [
        (words, "CG-001", waiting.matter_code)
    ]
    assert labels[0].actor_role == "dispatcher"

    trained = train(config_dir, migrated.triage_confidence_threshold, learned=learned)
    assert trained.learned == 1
    assert (config_dir / "triage" / "learned.csv").read_text(encoding="utf-8").splitlines() == [
        "text,matter",
        f"{words},CG-001",
    ]
    reloaded = await client.post("/v1/reference/reload", headers=admin)
    assert reloaded.status_code == 200, reloaded.text
    version = reloaded.json()["triage_model_version"]
    assert reloaded.json()["triage_model_examples"] == 1123 + 1

    similar = "医院门口共享单车停得乱七八糟 救护车都过不去"
    case = await case_of(runtime, await send_tip(runtime, similar, GRID))
    assert case.matter_code == "CG-001"
    opened = (await case_events(runtime, case.id))[0]["data"]
    assert any(line.startswith(f"分类模型 {version}：CG-001") for line in opened["explanation"])
