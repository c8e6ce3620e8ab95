"""``whistle dept-listen`` as a department runs it: a separate process against the real broker,
with escalation running in process (time moved by hand).

Department WHLYJ (县文化和旅游局) is summoned only by this module, so its topic holds only what
these tests put there.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaProducer

from contracts.topics import CASES
from services.runtime.settings import Settings
from tests.conftest import TokenFactory
from tests.integration.test_escalation_clocks import local
from tests.integration.test_whistle_protocol import (
    Escalation,
    auth,
    blow,
    produce,
    summoned,
    whistle,
)

# The module-scoped escalation app, shared as a fixture.
from tests.integration.test_whistle_protocol import escalation as escalation
from tests.support.infra import eventually

WHISTLE = Path(sys.executable).with_name("whistle")
DEPARTMENT = "WHLYJ"


@pytest.fixture(scope="module")
def group() -> str:
    return f"dept-whlyj-test-{uuid4().hex[:8]}"


async def listener(
    settings: Settings, group: str, token: str, *args: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "WHISTLE_DEPT_TOKEN": token,
        "WHISTLE_HOME": str(settings.home),
        "WHISTLE_CONFIG_DIR": str(settings.config_dir),
        "WHISTLE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
    }
    process = await asyncio.create_subprocess_exec(
        str(WHISTLE),
        "dept-listen",
        "--dept",
        DEPARTMENT,
        "--group",
        group,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def finished(process: asyncio.subprocess.Process) -> str:
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_the_listener_prints_the_summons_and_reports_in_with_its_prefix(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
    group: str,
) -> None:
    blown = whistle(uuid4(), [DEPARTMENT])
    start = local(2026, 12, 1, 9, 0)  # Tuesday
    escalation.clock.now = start
    await blow(producer, blown, start)
    dept = token("county_department", f"dept:{DEPARTMENT}")
    ack = ("--ack-with", "WH2026", "--max-messages", "1")
    async for process in listener(migrated, group, dept, *ack):
        output = await finished(process)
    number = f"WH2026-{blown.whistle_id.hex[:8]}"
    lines = output.splitlines()
    assert lines[0].startswith("[吹哨] ") and str(blown.whistle_id) in lines[0]
    assert "报到时限 2026-12-02 09:00" in lines[0] and blown.reason in lines[0]
    assert lines[1] == f"  → 已提交报到，回执号 {number}"

    # Escalation took the receipt, with the department's token, from escalation.whistles.v1
    # and recorded it.

    async def reported() -> dict | None:
        listed = await summoned(escalation, dept, DEPARTMENT, blown.whistle_id)
        return listed if listed["receipt_no"] == number else None

    listed = await eventually(reported, what="the listener's receipt recorded")
    assert listed["status"] == "awaiting_reply"
    assert listed["receipt"]["status"] == "met"


async def test_the_listener_prints_a_chase_and_without_a_terminal_reports_nothing(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
    group: str,
) -> None:
    blown = whistle(uuid4(), [DEPARTMENT])
    start = local(2026, 12, 3, 9, 0)  # Thursday
    escalation.clock.now = start
    await blow(producer, blown, start)
    # Its group goes on after the first test's message: the notice, then the chase.
    dept = token("county_department", f"dept:{DEPARTMENT}")
    async for process in listener(migrated, group, dept, "--max-messages", "2"):
        # Overdue Friday 4th 09:00, chased a working day later: Monday 7th 09:00.
        escalation.clock.now = local(2026, 12, 7, 9, 0)
        output = await finished(process)
    notice, chase = output.splitlines()
    assert notice.startswith("[吹哨] ") and str(blown.whistle_id) in notice
    assert chase.startswith("[催办] ") and str(blown.whistle_id) in chase
    assert "报到已超期，时限 2026-12-04 09:00" in chase
    response = await escalation.http.get(
        "/v1/whistles", params={"department": DEPARTMENT, "state": "overdue"}, headers=auth(dept)
    )
    (overdue,) = [
        w for w in response.json()["whistles"] if w["whistle_id"] == str(blown.whistle_id)
    ]
    assert (overdue["status"], overdue["receipt_no"]) == ("receipt_overdue", None)


async def test_another_countys_department_listens_to_its_own_countys_topic_with_county(
    escalation: Escalation,
    producer: AIOKafkaProducer,
    migrated: Settings,
    token: TokenFactory,
) -> None:
    """Tenancy (docs/scale.md): 桃林县 (140998) has a WHLYJ too; ``--county 140998`` reads
    ``escalation.dept.140998.whlyj.v1``, where only 桃林县's summonses go, and reports in with
    a token naming the county."""
    taolin = "140998"
    blown = whistle(uuid4(), [DEPARTMENT])
    start = local(2026, 12, 8, 9, 0)  # Tuesday
    escalation.clock.now = start
    await produce(producer, CASES, blown, start, "whistle/dispatch", county=taolin)
    dept = token("county_department", f"county:{taolin}", f"dept:{DEPARTMENT}")
    group = f"dept-{taolin}-whlyj-test-{uuid4().hex[:8]}"
    ack = ("--county", taolin, "--ack-with", "TL2026", "--max-messages", "1")
    async for process in listener(migrated, group, dept, *ack):
        output = await finished(process)
    first, receipt = output.splitlines()
    assert first.startswith("[吹哨] ") and str(blown.whistle_id) in first
    number = f"TL2026-{blown.whistle_id.hex[:8]}"
    assert receipt == f"  → 已提交报到，回执号 {number}"

    async def reported() -> dict | None:
        listed = await summoned(escalation, dept, DEPARTMENT, blown.whistle_id)
        return listed if listed["receipt_no"] == number else None

    await eventually(reported, what="桃林县's receipt recorded")
