"""双重考核 (issue #15, item 1): which officer a township leader may assess, for which period, and
the seal the opinion carries. Pure: the reference data and the leader's scopes come in, the
opinion's facts or a refusal come out; ``assessment_api`` records it as an event.

Dispatch owns units and staff, so the rule is here; the ledger records the opinion beside the
officer's figures and prints the sheet."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reference.county import ReferenceData, UnitKind

# 2026-12 (月), 2026-Q4 (季) or 2026 (年): the periods the ledger's figures are kept for.
PERIOD = re.compile(r"^\d{4}(-(0[1-9]|1[0-2])|-Q[1-4])?$")


class NotAssessable(Exception):
    """The opinion cannot be given; ``status`` and the Chinese words say why."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


@dataclass(frozen=True)
class Assessee:
    staff_id: str
    unit_id: str
    department_code: str | None
    township_code: str
    seal: str  # 盖章: the township government's name


def assessee(
    reference: ReferenceData, scopes: frozenset[str], staff_id: str, period: str
) -> Assessee:
    """The officer a leader holding ``scopes`` may assess for ``period``: one serving in a
    seconded squad (派驻) of a township the leader answers for."""
    if not PERIOD.match(period):
        raise NotAssessable(
            422, "考核期间无效", f"考核期间 {period} 应为 2026-12、2026-Q4 或 2026。"
        )
    for unit in reference.units.values():
        if unit.kind is not UnitKind.SECONDED_SQUAD or unit.township is None:
            continue
        if any(member.id == staff_id for member in unit.staff):
            if not ({f"township:{unit.township}", "township:*"} & scopes):
                break  # not the leader's township: answered as unknown, nothing is revealed
            township = reference.townships[unit.township]
            return Assessee(
                staff_id, unit.id, unit.department, unit.township, f"{township.name}人民政府"
            )
    raise NotAssessable(
        404, "未找到派驻人员", f"本乡镇派驻机构中没有工作人员 {staff_id}，无法出具考核意见。"
    )
