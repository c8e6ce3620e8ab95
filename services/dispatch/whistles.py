"""吹哨: may a township summon these county departments for this case, for this reason?

The county's "两吹两不吹" is data (deploy/config/whistle_rules.yaml, loaded and validated with
the rest of the reference data as ``WhistleRules``): reason codes, each allowing a whistle under
some conditions ("两吹"), and named "不吹" rules that forbid one unless the reason overrides
them. :func:`judge` applies them to one request and names every rule that refused it. Routing
blows the whistle on its own when it sends a county-only or unclaimed matter to the county
(:func:`automatic_whistle`). Plain functions: no database, no clock, no HTTP.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from contracts.cases import CaseStatus
from contracts.events import WhistleBlown
from reference.county import (
    Authority,
    MatterItem,
    NoWhistleRule,
    Unit,
    Urgency,
    WhistleReason,
    WhistleRules,
)
from services.dispatch.labels import AUTHORITY, STATUS, URGENCY, joined
from services.dispatch.models import Case, Whistle

# Authority types under which a township acts on its own once it has claimed the item.
_TOWNSHIP_ACTS = frozenset({Authority.STATUTORY, Authority.DEVOLVED, Authority.ENTRUSTED})

# Routing rules that send a case to a county department because the township may not act.
AUTOMATIC_RULES = {
    "county_only": "县级专属事项，系统自动向主管部门吹哨",
    "unclaimed": "乡镇未认领该事项，系统自动向主管部门吹哨",
}


@dataclass(frozen=True)
class WhistleFacts:
    """What the rules look at: the case as it stands."""

    status: CaseStatus
    urgency: Urgency
    matter: MatterItem | None
    claimed: bool  # the case's township has claimed the matter
    reopens: int = 0
    summoned: frozenset[str] = frozenset()  # departments already whistled for this case


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str


@dataclass(frozen=True)
class Eligibility:
    rule: str  # the reason code that allowed the whistle
    refusals: tuple[Refusal, ...] = ()
    waived: tuple[str, ...] = ()  # "不吹" rules the reason overrode, for the record

    @property
    def allowed(self) -> bool:
        return not self.refusals


def judge(
    facts: WhistleFacts,
    departments: Sequence[str],
    reason_code: str,
    rules: WhistleRules | None,
    known_departments: Collection[str],
) -> Eligibility:
    """Allowed, or refused with every rule that refused it (so a dispatcher fixes all at once)."""
    if rules is None:
        return Eligibility(reason_code, (Refusal("no_rules", "本县未配置吹哨规则"),))
    refusals: list[Refusal] = []
    reason = rules.reason(reason_code)
    if reason is None:
        known = "、".join(f"{r.code}（{r.label}）" for r in rules.reasons)
        refusals.append(Refusal("unknown_reason", f"未知的吹哨理由 {reason_code!r}，可选：{known}"))
    else:
        refusals.extend(_unmet_conditions(reason, facts))
    unknown = [d for d in departments if d not in known_departments]
    if unknown:
        refusals.append(Refusal("unknown_department", f"没有部门 {'、'.join(unknown)}"))
    if not departments:
        refusals.append(Refusal("no_department", "至少选择一个县直部门"))
    waived: list[str] = []
    for rule in rules.no_whistle:
        hit = _forbids(rule, facts, departments)
        if hit is None:
            continue
        if reason_code in rule.unless_reasons:
            waived.append(rule.name)
        else:
            refusals.append(Refusal(rule.name, f"{rule.label}：{hit}"))
    return Eligibility(reason_code, tuple(refusals), tuple(waived))


def _unmet_conditions(reason: WhistleReason, facts: WhistleFacts) -> list[Refusal]:
    unmet: list[str] = []
    if reason.statuses and facts.status not in reason.statuses:
        allowed = joined(STATUS, reason.statuses)
        unmet.append(f"案件状态为{STATUS[facts.status]}，须为{allowed}")
    matter = facts.matter
    if reason.authorities:
        unclaimed_ok = reason.or_unclaimed and matter is not None and not facts.claimed
        if matter is None:
            unmet.append("案件尚未确定事项")
        elif matter.authority is None:  # a service request: no authority type to whistle on
            unmet.append(f"{matter.name}为公共服务诉求，无职权类型")
        elif matter.authority not in reason.authorities and not unclaimed_ok:
            allowed = joined(AUTHORITY, reason.authorities)
            extra = "，或乡镇未认领的事项" if reason.or_unclaimed else ""
            unmet.append(f"事项职权类型为{AUTHORITY[matter.authority]}，须为{allowed}{extra}")
    if reason.urgencies and facts.urgency not in reason.urgencies:
        allowed = joined(URGENCY, reason.urgencies)
        unmet.append(f"案件紧急程度为{URGENCY[facts.urgency]}，须为{allowed}")
    if reason.requires_supporting_departments and not (matter and matter.supporting_departments):
        unmet.append("事项没有配合部门")
    if facts.reopens < reason.min_reopens:
        unmet.append(f"案件重新办理 {facts.reopens} 次，须至少 {reason.min_reopens} 次")
    return [Refusal(reason.code, f"{reason.label}：{why}") for why in unmet]


def _forbids(rule: NoWhistleRule, facts: WhistleFacts, departments: Sequence[str]) -> str | None:
    """Why ``rule`` forbids this whistle, or None if it does not apply."""
    matter = facts.matter
    if rule.when == "claimed_and_alone":
        if (
            matter is not None
            and facts.claimed
            and matter.authority in _TOWNSHIP_ACTS
            and not matter.supporting_departments
        ):
            return f"乡镇已认领事项 {matter.code}，且该事项无配合部门"
        return None
    if rule.when == "department_not_responsible":
        if matter is None:
            return "案件尚未确定事项，无法判断责任部门"
        responsible = {matter.lead_department, *matter.supporting_departments}
        unrelated = [d for d in departments if d not in responsible]
        if unrelated:
            return f"{'、'.join(unrelated)} 不是事项 {matter.code} 的牵头或配合部门"
        return None
    again = [d for d in departments if d in facts.summoned]
    return f"已向 {'、'.join(again)} 吹哨" if again else None


@dataclass(frozen=True)
class AutomaticWhistle:
    departments: tuple[str, ...]
    rule: str
    reason: str


def automatic_whistle(routing_rule: str, unit: Unit) -> AutomaticWhistle | None:
    """Routing sent the case to a county department because the township may not act on it:
    the whistle is blown for the township, naming the routing rule as the reason."""
    reason = AUTOMATIC_RULES.get(routing_rule)
    if reason is None or unit.department is None:
        return None
    return AutomaticWhistle((unit.department,), routing_rule, reason)


def new_whistle(
    whistle_id: UUID,
    case: Case,
    departments: Sequence[str],
    reason_code: str,
    reason: str,
    rule: str,
    *,
    automatic: bool,
    actor: str,
    actor_role: str,
    at: datetime,
) -> tuple[Whistle, WhistleBlown]:
    """The whistle's row and its event, for the caller to add and stage in one transaction."""
    whistle = Whistle(
        id=whistle_id,
        case_id=case.id,
        township_code=case.township_code,
        departments=list(departments),
        reason_code=reason_code,
        reason=reason,
        rule=rule,
        automatic=automatic,
        actor=actor,
        actor_role=actor_role,
        created_at=at,
    )
    event = WhistleBlown(
        **case.step(actor, actor_role),
        whistle_id=whistle_id,
        departments=list(departments),
        reason_code=reason_code,
        reason=reason,
        automatic=automatic,
        rule=rule,
        matter_code=case.matter_code,
        urgency=case.urgency,  # type: ignore[arg-type]
    )
    return whistle, event
