"""In whose name a case is handled, how far a penalty decided by entrustment may go, and which
penalty decisions wait for legal review: three rules of lawful enforcement, one place each.

- **Acting capacity** (:func:`acting_capacity`): a township acts in its own name, with its own
  legal documents, on its statutory, devolved (赋权) and admitted matters; a county department's
  unit in its department's name; a township on an entrusted (委托) matter "以委托机关的名义开展
  执法工作，使用委托机关的法律文书" — in the entrusting department's name, with its documents.
- **The entrusted ceiling** (:func:`entrustment_refusal`): what a township decides in the
  department's name is limited to the item's ceiling (the catalogue's, else
  ``DEFAULT_ENTRUSTED_CEILING``) — "部分行政处罚权(指行政警告权和小额的行政罚款权)"; beyond it the
  matter goes back to the department.
- **Major decisions** (:func:`major_decisions`): a penalty decision on the county's 重大执法决定
  list takes effect only after legal review (法制审核, 国办发〔2018〕118号).

Plain data and functions: no database, no clock, no HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.cases import PenaltyKind
from contracts.events import ActingFor, Penalty
from reference.county import (
    Authority,
    Department,
    EntrustedCeiling,
    MajorDecision,
    MatterItem,
    Township,
    Unit,
    UnitKind,
)
from services.dispatch.labels import PENALTY


@dataclass(frozen=True)
class Capacity:
    """In whose name a case is handled, on what legal basis, with whose documents: what the
    case and each of its steps record."""

    acting_in_name_of: ActingFor
    legal_basis: str
    document_type: str

    def record(self) -> dict[str, Any]:
        """As the case keeps it and its events carry it (the fields of ``CaseStep``)."""
        return {
            "acting_in_name_of": self.acting_in_name_of.model_dump(mode="json"),
            "legal_basis": self.legal_basis,
            "document_type": self.document_type,
        }


def acting_capacity(
    item: MatterItem,
    unit: Unit,
    township: Township | None,
    departments: Mapping[str, Department],
) -> Capacity:
    """The capacity in which ``unit`` handles a case of ``item`` in ``township`` (the case's)."""
    if unit.kind is UnitKind.COUNTY_DEPARTMENT or township is None:
        department = departments[unit.department or item.lead_department]
        acting = ActingFor(kind="department", code=department.code, name=department.name)
        documents = f"{department.name}行政执法文书"
    elif item.authority is Authority.ENTRUSTED:
        department = departments[item.lead_department]
        acting = ActingFor(
            kind="department", code=department.code, name=department.name, entrusted=True
        )
        documents = f"{department.name}行政执法文书（{township.name}受委托使用）"
    else:
        acting = ActingFor(kind="township", code=township.code, name=township.name)
        documents = f"{township.name}行政执法文书"
    return Capacity(acting, item.legal_basis, documents)


def describe_ceiling(ceiling: EntrustedCeiling) -> str:
    """The ceiling as the law's words put it: 警告或2000元以下罚款."""
    words = [
        f"{ceiling.max_fine_yuan}元以下罚款" if kind is PenaltyKind.FINE else PENALTY[kind]
        for kind in ceiling.penalties
    ]
    return "或".join(words)


def describe_penalty(penalty: Penalty) -> str:
    """A penalty decision in words: 警告、罚款5000元."""
    return "、".join(
        f"罚款{penalty.fine_yuan}元" if kind is PenaltyKind.FINE else PENALTY[kind]
        for kind in penalty.kinds
    )


def beyond(ceiling: EntrustedCeiling, penalty: Penalty) -> bool:
    """Whether ``penalty`` imposes a kind the ceiling leaves out, or a fine above its limit."""
    if any(kind not in ceiling.penalties for kind in penalty.kinds):
        return True
    limit = ceiling.max_fine_yuan
    return penalty.fine_yuan is not None and limit is not None and penalty.fine_yuan > limit


def entrustment_refusal(
    item: MatterItem, acting: ActingFor | None, penalty: Penalty | None
) -> str | None:
    """Why a township may not decide ``penalty`` in the entrusting department's name, or None
    when it may (or when the case is not handled by entrustment: a township in its own name and
    a department are bound by the law alone)."""
    ceiling = item.ceiling
    if penalty is None or acting is None or not acting.entrusted or ceiling is None:
        return None
    if not beyond(ceiling, penalty):
        return None
    return (
        f"超出委托范围：委托事项仅可给予{describe_ceiling(ceiling)}，"
        f"应移交委托机关（{acting.name}）依法处理（本次决定：{describe_penalty(penalty)}）"
    )


def major_decisions(penalty: Penalty, listed: Sequence[MajorDecision]) -> list[str]:
    """The entries of the 重大执法决定 list ``penalty`` matches (their labels): any at all, and
    the decision waits for legal review."""
    fine = penalty.fine_yuan or 0
    return [
        entry.label
        for entry in listed
        if entry.kind in penalty.kinds and (entry.above_yuan is None or fine > entry.above_yuan)
    ]
