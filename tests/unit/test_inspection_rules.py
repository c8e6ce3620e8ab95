"""Dispatch's inspection rules (issue #15, item 6), pure: who completes a task, where a finding
may be put, and when a task is missed."""

from __future__ import annotations

from datetime import date

import pytest

from reference.county import load_reference
from services.dispatch.inspections import TaskFacts, completion_refusal, state
from tests.unit.test_reference import CONFIG

REFERENCE = load_reference(CONFIG)
TUESDAY = date(2026, 12, 8)
TASK = TaskFacts(unit_id="T03-CGJ", township_code="T03", status="planned", due_on=TUESDAY)
OFFICER = ({"unit_member"}, {"unit:T03-CGJ"})


def test_a_task_is_planned_on_its_day_missed_after_it_and_done_once_completed() -> None:
    assert state("planned", TUESDAY, TUESDAY) == "planned"
    assert state("planned", TUESDAY, date(2026, 12, 7)) == "planned"
    assert state("planned", TUESDAY, date(2026, 12, 9)) == "missed"
    assert state("done", TUESDAY, date(2027, 1, 1)) == "done"  # late, but done


def test_the_units_officer_completes_with_findings_in_the_townships_grids() -> None:
    assert completion_refusal(TASK, *OFFICER, [], REFERENCE) is None
    assert completion_refusal(TASK, *OFFICER, ["T03V01G01", "T03V02G02"], REFERENCE) is None
    assert completion_refusal(TASK, {"unit_member"}, {"unit:*"}, [], REFERENCE) is None


@pytest.mark.parametrize(
    ("roles", "scopes"),
    [
        ({"unit_member"}, {"unit:T03-SCJGJ"}),  # another unit of the township
        ({"dispatcher"}, {"township:T03"}),  # reads the township's tasks, completes none
        ({"county_supervisor"}, {"township:*", "unit:T03-CGJ"}),
    ],
)
def test_nobody_else_completes_it_and_learns_nothing_of_it(
    roles: set[str], scopes: set[str]
) -> None:
    refusal = completion_refusal(TASK, roles, scopes, [], REFERENCE)
    assert refusal is not None and (refusal.status, refusal.title) == (404, "未找到巡查任务")


def test_a_task_is_completed_once_and_a_finding_stays_in_its_township() -> None:
    done = TaskFacts("T03-CGJ", "T03", "done", TUESDAY)
    refusal = completion_refusal(done, *OFFICER, [], REFERENCE)
    assert refusal is not None and (refusal.status, refusal.title) == (409, "巡查任务已完成")
    for grid in ("T01V01G01", "NOPE"):
        refusal = completion_refusal(TASK, *OFFICER, [grid], REFERENCE)
        assert refusal is not None and refusal.status == 422
        assert grid in refusal.detail and refusal.title == "发现问题的网格无效"
