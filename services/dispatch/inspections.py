"""Proactive inspection (issue #15, item 6): who completes a unit's inspection task, what a
finding may name, and when a task is missed (who reads the tasks is the cases' rule,
``queries.scoped_to``). Pure: the task's facts, the caller's
roles and scopes, the reference data and the county's date come in; a decision comes out.
``inspection_service`` applies them; which tasks fall due on a day is the reference layer's
(``reference/inspections.py``), as the plans are reference data."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

from reference.county import ReferenceData

# Who reads inspection tasks: the unit's members, the township's dispatchers, the county.
READERS = ("unit_member", "dispatcher", "county_supervisor")
# Only an officer of the unit completes its task: the unit's member, on the spot.
COMPLETER = "unit_member"


class NotCompletable(Exception):
    """The task cannot be completed as asked; ``status`` and the Chinese words say why."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class TaskFacts:
    """What the rules need of a task."""

    unit_id: str
    township_code: str
    status: str
    due_on: date


def _codes(scopes: Collection[str], kind: str) -> set[str]:
    return {s.split(":", 1)[1] for s in scopes if s.startswith(f"{kind}:")}


def state(status: str, due_on: date, today: date) -> str:
    """planned (due today or later), missed (its day passed undone) or done."""
    if status == "done":
        return "done"
    return "missed" if due_on < today else "planned"


def completion_refusal(
    task: TaskFacts,
    roles: Collection[str],
    scopes: Collection[str],
    finding_grids: Sequence[str],
    reference: ReferenceData,
) -> NotCompletable | None:
    """Why this caller may not complete the task with findings in these grids; None if they may.
    A task another unit's member asks about is answered as unknown: nothing is revealed."""
    if COMPLETER not in roles or not _codes(scopes, "unit") & {task.unit_id, "*"}:
        return NotCompletable(404, "未找到巡查任务", "本单位没有这项巡查任务。")
    if task.status == "done":
        return NotCompletable(409, "巡查任务已完成", "这项巡查任务已经完成，结果已记录。")
    for grid in finding_grids:
        found = reference.grids.get(grid)
        if found is None or found[0].code != task.township_code:
            return NotCompletable(
                422,
                "发现问题的网格无效",
                f"网格 {grid} 不在本次巡查的乡镇（{task.township_code}）内。",
            )
    return None
