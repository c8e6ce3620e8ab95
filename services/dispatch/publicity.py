"""行政执法公示: what the county publishes of each enforcement case it has closed, and when.

The 三项制度 guideline (国办发〔2018〕118号) asks that enforcement matters, their legal basis,
the process, the results, the officers and the channels of remedy be public — and in whose
name each decision was made (the township, or the department that entrusted it). Whistle publishes
each case closed after a resolution, once ``delay`` has passed since it was closed (time for
the parties to be told first), from what dispatch and the catalogue hold — and nothing of the
citizen who reported it: no words of the tip, no contact, no place finer than the village, no
resolution note (a unit's note may name people). The acting officer's name and certificate
number are published: the guideline requires officers to be identifiable.

Plain data and functions, no clock of their own: the router passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from contracts.events import ActingFor, Penalty
from reference.county import ReferenceData
from services.dispatch.enforcement import describe_penalty
from services.dispatch.labels import RESOLUTION

# The remedy every administrative decision carries: 行政复议法 art. 20 (sixty days) and
# 行政诉讼法 art. 46 (six months).
REMEDY = (
    "如对处理结果有异议，可以自知道该行政行为之日起六十日内向县人民政府申请行政复议，"
    "或者自知道或者应当知道作出行政行为之日起六个月内依法向人民法院提起行政诉讼。"
)

ACTION_TYPE = {
    "inspection": "行政检查",
    "penalty": "行政处罚",
    "licence": "行政许可",
    "coercive_measure": "行政强制",
}


@dataclass(frozen=True)
class ClosedCase:
    """A closed case as the record has it: the latest resolution and close of its rounds."""

    case_id: UUID
    matter_code: str | None
    township_code: str | None
    village_code: str | None
    unit_id: str | None
    staff_id: str | None
    opened_at: datetime
    assigned_at: datetime | None
    resolved_at: datetime
    resolution: str
    closed_at: datetime
    # As the resolution recorded them: in whose name it was decided, and what it imposed.
    acting_in_name_of: ActingFor | None = None
    penalty: Penalty | None = None


@dataclass(frozen=True)
class Officer:
    name: str
    certificate_number: str | None


@dataclass(frozen=True)
class Step:
    name: str
    at: datetime


@dataclass(frozen=True)
class PublicRecord:
    case_id: UUID
    matter_code: str
    matter_name: str
    open311_service_code: str | None
    action_type: str
    legal_basis: str
    result: str
    acting_unit: str | None
    acting_in_name_of: str | None  # 决定机关: the township, or the (entrusting) department
    officer: Officer | None
    township: str | None
    village: str | None
    process: tuple[Step, ...]
    closed_at: datetime
    remedy: str = REMEDY


def publishable_before(now: datetime, delay: timedelta) -> datetime:
    """Cases closed at or before this instant are published at ``now``."""
    return now - delay


def published_matters(reference: ReferenceData) -> list[str]:
    """The matters whose closed cases are published: the enforcement list's. A service request
    (a street light mended) is no administrative enforcement act: 行政执法公示 leaves it out."""
    return [item.code for item in reference.catalogue.items if not item.is_service]


def public_record(case: ClosedCase, reference: ReferenceData) -> PublicRecord | None:
    """The case as the public reads it; None for a case with no matter of the catalogue (a
    matter the current catalogue no longer lists is not published under a guessed name) and
    for a service request (see :func:`published_matters`)."""
    item = reference.items.get(case.matter_code or "")
    if item is None or item.is_service or item.action_type is None:
        return None
    unit = reference.units.get(case.unit_id or "")
    staff = next((s for s in unit.staff if s.id == case.staff_id), None) if unit else None
    township = reference.townships.get(case.township_code or "")
    village = reference.villages.get(case.village_code or "")
    steps = [Step("受理", case.opened_at)]
    if case.assigned_at is not None:
        steps.append(Step("派单", case.assigned_at))
    steps += [Step("办结", case.resolved_at), Step("结案", case.closed_at)]
    result = RESOLUTION[case.resolution]
    if case.penalty is not None:
        result = f"{result}：{describe_penalty(case.penalty)}"
    return PublicRecord(
        case_id=case.case_id,
        matter_code=item.code,
        matter_name=item.name,
        open311_service_code=item.open311_service_code,
        action_type=ACTION_TYPE[item.action_type],
        legal_basis=item.legal_basis or "",
        result=result,
        acting_unit=unit.name if unit else None,
        acting_in_name_of=_in_name_of(case.acting_in_name_of),
        officer=Officer(staff.name, staff.certificate.number if staff.certificate else None)
        if staff
        else None,
        township=township.name if township else None,
        village=village[1].name if village else None,
        process=tuple(steps),
        closed_at=case.closed_at,
    )


def _in_name_of(acting: ActingFor | None) -> str | None:
    """决定机关 as the public reads it; an entrusted decision says it was made by entrustment."""
    if acting is None:
        return None
    return f"{acting.name}（委托执法）" if acting.entrusted else acting.name
