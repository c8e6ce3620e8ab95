"""Routing: who must act on a case, decided from the item's authority and the township's claims.

A tip that triage could not place, or whose matter it is not sure of, is not routed: it waits
in a queue for a dispatcher (:func:`waiting_queue`). Deterministic, and explained: every
decision names the rule that made it. An item with supporting departments is a joint operation
(联合执法): the lead unit acts with the supporting departments' units of the same township
(their county teams when the lead is a county one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

from reference.county import (
    Authority,
    MatterItem,
    ReferenceData,
    Staff,
    Unit,
    UnitKind,
)
from services.dispatch.authority import judge_assignment
from services.dispatch.triage import Triaged

# Out-of-list tips wait here for the county's admission decision (准入).
ADMISSION_QUEUE = "admission"
# ... and here, once the county supervisor has proposed admission, for the county government.
ADMISSION_APPROVAL_QUEUE = "admission_approval"
# The rule of a case that waits in the county's queue because no place was given.
UNLOCATED = "no_location"


@dataclass(frozen=True)
class Assignment:
    unit: Unit
    staff: Staff | None
    rule: str
    explanation: tuple[str, ...]
    supporting: tuple[Unit, ...] = ()


@dataclass(frozen=True)
class NeedsTriage:
    queue: str
    rule: str
    reason: str


def waiting_queue(triaged: Triaged, confidence_threshold: float) -> NeedsTriage | None:
    """The queue a tip waits in for a dispatcher, or None when routing may decide: a tip not
    located waits for the county, one whose matter is unknown or not confidently known waits
    in its township."""
    classification, location = triaged.classification, triaged.location
    if location.township is None:
        return NeedsTriage("county", UNLOCATED, "无法确定所属乡镇，转县级分拨")
    if classification.item is None or classification.confidence < confidence_threshold:
        # The dispatcher who decides sees the model's best guesses and why.
        candidates = (
            f"；候选：{'；'.join(classification.candidates)}" if classification.candidates else ""
        )
        return NeedsTriage(
            f"township:{location.township}",
            "low_confidence",
            f"事项识别置信度 {classification.confidence:.2f} 低于 {confidence_threshold:.2f}，"
            f"待调度员人工分拨{candidates}",
        )
    return None


def route(
    item: MatterItem,
    township: str,
    village: str | None,
    reference: ReferenceData,
    open_load: Mapping[str, int],
    today: date,
) -> Assignment | NeedsTriage:
    """Pick the unit, then its certified staff member with the least open load; for a joint
    operation, also the supporting units. A unit the authority rule (authority.py) refuses is
    not assigned: the case waits in its township's queue with the rule's reason."""
    lead = lead_unit(item, township, reference)
    if isinstance(lead, NeedsTriage):
        return lead
    return route_from_lead(lead, item, township, village, reference, open_load, today)


def route_from_lead(
    lead: Lead,
    item: MatterItem,
    township: str,
    village: str | None,
    reference: ReferenceData,
    open_load: Mapping[str, int],
    today: date,
) -> Assignment | NeedsTriage:
    """:func:`route` once :func:`lead_unit` has decided the unit: for a caller that reads the
    open load of that unit's staff only."""
    assignment = _staffed(item, lead, village, open_load, today)
    verdict = judge_assignment(
        item,
        assignment.unit,
        township=township,
        claims=reference.claims.get(township, frozenset()),
        admission=None,  # routing never assigns an out-of-list matter: it waits for admission
        today=today,
    )
    if not verdict.allowed:
        return NeedsTriage(
            f"township:{township}",
            verdict.refusals[0].rule.value,
            f"{assignment.explanation[0]}；{verdict.reason}，待调度员人工分拨",
        )
    if not item.supporting_departments:
        return assignment
    supporting = supporting_units(item, assignment.unit, township, reference)
    if not supporting:
        return assignment
    names = "、".join(u.name for u in supporting)
    return replace(
        assignment,
        supporting=supporting,
        explanation=(
            *assignment.explanation,
            f"联合执法：{assignment.unit.name} 牵头，{names} 配合",
        ),
    )


def supporting_units(
    item: MatterItem, lead: Unit, township: str, reference: ReferenceData
) -> tuple[Unit, ...]:
    """Each supporting department's unit in the township (a seconded squad or an N unit), or
    its county team when the lead is at county level or the township has none of it."""
    own = [] if lead.kind is UnitKind.COUNTY_DEPARTMENT else reference.units_of_township(township)
    found: list[Unit] = []
    for department in item.supporting_departments:
        unit = next((u for u in own if u.department == department), None)
        unit = unit or reference.units.get(f"{department}-COUNTY")
        if unit is not None and unit.id != lead.id and unit not in found:
            found.append(unit)
    return tuple(found)


@dataclass(frozen=True)
class Lead:
    """The unit that leads a routed case, by which rule and why; its staff is picked by load."""

    unit: Unit
    rule: str
    why: str


def lead_unit(item: MatterItem, township: str, reference: ReferenceData) -> Lead | NeedsTriage:
    """The unit a case of ``item`` in ``township`` goes to, or the queue it waits in: decided
    without anyone's load, so that only that unit's staff's load need be read."""
    if item.is_service:
        # A public-service request goes to its responsible body (the township's station or
        # utility office, else the county's).
        body = reference.responsible_unit(item, township)
        if body is None:  # validation at load makes this unreachable for the loaded catalogue
            return NeedsTriage("county", "no_responsible_body", f"{item.name} 无责任单位")
        return Lead(body, "service", f"公共服务诉求（非执法事项），由责任单位{body.name}办理")
    if item.authority is Authority.OUT_OF_LIST:
        return NeedsTriage(
            ADMISSION_QUEUE, "out_of_list", f"{item.name} 不在乡镇事项清单内，须走准入程序"
        )
    claimed = item.code in reference.claims.get(township, frozenset())
    if item.authority in (Authority.COUNTY_ONLY, Authority.ASSIST) or not claimed:
        unit = reference.units.get(f"{item.lead_department}-COUNTY")
        if unit is None:
            return NeedsTriage(
                "county", "no_county_unit", f"主管部门 {item.lead_department} 无县级队伍"
            )
        if item.authority is Authority.COUNTY_ONLY:
            return Lead(unit, "county_only", "县级专属事项，由县直部门办理")
        if item.authority is Authority.ASSIST:
            return Lead(unit, "assist", "协助事项，由县直部门牵头、乡镇协助")
        return Lead(unit, "unclaimed", f"乡镇 {township} 未认领该事项，由县直部门办理")

    own_units = reference.units_of_township(township)
    if item.authority is Authority.STATUTORY:
        team = next(u for u in own_units if u.kind is UnitKind.TOWNSHIP_TEAM)
        return Lead(team, "statutory", "乡镇法定职权，由综合执法队办理")
    squad = next(
        (u for u in own_units if u.kind is UnitKind.SECONDED_SQUAD and u.domain is item.domain),
        None,
    )
    if squad is not None:
        why = (
            f"{'赋权' if item.authority is Authority.DEVOLVED else '委托'}事项，由{squad.name}办理"
        )
        return Lead(squad, item.authority.value, why)
    team = next(u for u in own_units if u.kind is UnitKind.TOWNSHIP_TEAM)
    return Lead(team, item.authority.value, "无对口派驻队伍，由综合执法队办理")


def _staffed(
    item: MatterItem, lead: Lead, village: str | None, open_load: Mapping[str, int], today: date
) -> Assignment:
    if item.is_service:
        # Nobody needs a certificate to mend a street light: the least loaded person of the body.
        staff = least_loaded(lead.unit, open_load)
        return Assignment(
            lead.unit,
            staff,
            lead.rule,
            (lead.why, f"指派 {staff.id}（在办 {open_load.get(staff.id, 0)} 件）"),
        )
    return pick_staff(lead.unit, village, open_load, today, lead.rule, lead.why)


def least_loaded(unit: Unit, open_load: Mapping[str, int]) -> Staff:
    """Anyone of ``unit`` with the fewest open cases, for a service request (no 执法证 needed)."""
    return min(unit.staff, key=lambda s: (open_load.get(s.id, 0), s.id))


def pick_staff(
    unit: Unit,
    village: str | None,
    open_load: Mapping[str, int],
    today: date,
    rule: str,
    why: str,
) -> Assignment:
    certified = [s for s in unit.staff if s.certificate and s.certificate.valid_on(today)]
    explanation = [why]
    if not certified:
        explanation.append(f"{unit.name} 无有效执法证人员，待单位内部指派")
        return Assignment(unit, None, rule, tuple(explanation))
    # Officers answering for the case's village first, then the least loaded, then by id.
    staff = min(
        certified,
        key=lambda s: (village not in s.villages, open_load.get(s.id, 0), s.id),
    )
    explanation.append(f"指派持证人员 {staff.id}（在办 {open_load.get(staff.id, 0)} 件）")
    return Assignment(unit, staff, rule, tuple(explanation))
