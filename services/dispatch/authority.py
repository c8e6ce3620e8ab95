"""Who may be given a matter: the one authority rule every assignment path asks.

Routing (routing.py), a dispatcher's assignment in triage, the county's arbitration, the
admission of an out-of-list matter (准入) and a reassignment after a rejection all put a case on
a unit only if :func:`judge_assignment` allows it, so that no path can put on a township what
the catalogue and the county's decisions do not let it carry:

- a township unit acts only in its own township (the case's), and only on matters the township
  holds: its statutory, devolved (赋权) and entrusted (委托) items that it has claimed;
- a county-only (县级专属) matter is the county department's, and an assist (协助) matter is led
  by it (the township assists): neither is given to a township unit to lead;
- an out-of-list (清单之外) matter is given to a township only once the county government has
  approved its admission for that township, with the approving body and document number;
- a matter whose action type is ``penalty`` goes only to a unit with at least one officer
  holding an enforcement certificate (执法证) valid that day.

A public-service item (``kind: service``: a street light, a water outage) is no enforcement
matter: it goes to a service station, utility or county department without the claims and
certificate checks — only not to another township's body. An enforcement matter never goes to a
service station or utility, which hold no enforcement power.

A county department's own unit may be given any matter (the county acts in its own name); the
certificate rule still holds for it. Every refusal is named and said in Chinese; all that
refuse are given at once. Plain data and a function: no database, no clock, no HTTP.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from reference.county import SERVICE_BODY_KINDS, Authority, MatterItem, Unit, UnitKind
from services.dispatch.labels import AUTHORITY

# Action types that are enforcement proper: only certified officers may carry them out.
ENFORCEMENT_ACTIONS = frozenset({"penalty"})


class AuthorityRefusal(StrEnum):
    OTHER_TOWNSHIP = "other_township"
    COUNTY_ONLY = "county_only"
    ASSIST = "assist"
    UNCLAIMED = "unclaimed"
    NOT_ADMITTED = "not_admitted"
    NO_CERTIFICATE = "no_certificate"
    NOT_ENFORCEMENT_BODY = "not_enforcement_body"


@dataclass(frozen=True)
class AdmissionInForce:
    """An approved admission decision (准入): ``matter_code`` may be given to units of
    ``township`` on the authority of ``approving_body``'s document ``document_no``."""

    matter_code: str
    township: str
    approving_body: str
    document_no: str


@dataclass(frozen=True)
class Refusal:
    rule: AuthorityRefusal
    reason: str


@dataclass(frozen=True)
class Verdict:
    """Allowed when nothing refused; ``grounds`` says on what authority, for the explanation."""

    grounds: str
    refusals: tuple[Refusal, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.refusals

    @property
    def reason(self) -> str:
        """Every refusal's reason, as one sentence a person reads."""
        return "；".join(r.reason for r in self.refusals)


def certified_on(unit: Unit, day: date) -> bool:
    """Whether any of the unit's officers holds an enforcement certificate valid on ``day``."""
    return any(s.certificate is not None and s.certificate.valid_on(day) for s in unit.staff)


def judge_assignment(
    item: MatterItem,
    unit: Unit,
    *,
    township: str | None,
    claims: Collection[str],
    admission: AdmissionInForce | None,
    today: date,
) -> Verdict:
    """May ``unit`` be given a case of ``item`` in ``township`` (the case's), whose claimed
    items are ``claims``, with ``admission`` the approved admission decision of the case if
    any, on ``today`` (the county's date, by which certificates are valid)?"""
    if item.is_service:
        return _service_may_go(item, unit, township)
    if unit.kind in SERVICE_BODY_KINDS:
        reason = f"{unit.name}为公共服务单位，无行政执法权，不得指派执法事项（{item.name}）"
        return Verdict("", (Refusal(AuthorityRefusal.NOT_ENFORCEMENT_BODY, reason),))
    refusals: list[Refusal] = []
    if unit.kind is UnitKind.COUNTY_DEPARTMENT:
        grounds = f"{unit.name}为县直部门队伍，以本部门名义办理"
    else:
        grounds, refused = _township_may_hold(item, unit, township, claims, admission)
        refusals.extend(refused)
    if item.action_type in ENFORCEMENT_ACTIONS and not certified_on(unit, today):
        refusals.append(
            Refusal(
                AuthorityRefusal.NO_CERTIFICATE,
                f"{unit.name}当前无持有效执法证人员，不得指派行政处罚事项（{item.name}）",
            )
        )
    return Verdict(grounds, tuple(refusals))


def _service_may_go(item: MatterItem, unit: Unit, township: str | None) -> Verdict:
    """A service request goes to any body that fixes things, in the case's township or
    county-wide: no claims, no certificate, no authority type."""
    if unit.township is not None and unit.township != township:
        reason = f"{unit.name}不属于本案所在乡镇（{township or '未定位'}），不得跨乡镇指派"
        return Verdict("", (Refusal(AuthorityRefusal.OTHER_TOWNSHIP, reason),))
    return Verdict(f"公共服务诉求（{item.name}），由{unit.name}办理")


def _township_may_hold(
    item: MatterItem,
    unit: Unit,
    township: str | None,
    claims: Collection[str],
    admission: AdmissionInForce | None,
) -> tuple[str, list[Refusal]]:
    """On what grounds a township unit may lead ``item``, or why it may not."""
    if unit.township != township:
        reason = f"{unit.name}不属于本案所在乡镇（{township or '未定位'}），不得跨乡镇指派"
        return "", [Refusal(AuthorityRefusal.OTHER_TOWNSHIP, reason)]
    return _held_by_township(item, unit.name, township, claims, admission)


def judge_referral(item: MatterItem, township: str, claims: Collection[str]) -> Verdict:
    """May a county department refer (移送) a matter of ``item`` to ``township``, whose
    claimed items are ``claims``? Only what a township unit may lead: the same rule as an
    assignment, for the township as a whole (routing then picks its unit, under
    :func:`judge_assignment`). No admission decision stands behind a referral, so an
    out-of-list matter is refused too: the county government admits it first."""
    grounds, refusals = _held_by_township(item, "乡镇", township, claims, None)
    return Verdict(grounds, tuple(refusals))


def _held_by_township(
    item: MatterItem,
    holder: str,
    township: str | None,
    claims: Collection[str],
    admission: AdmissionInForce | None,
) -> tuple[str, list[Refusal]]:
    """On what grounds ``holder`` (a township unit, or the township) may lead ``item``."""
    match item.authority:
        case Authority.COUNTY_ONLY:
            reason = f"{item.name}为县级专属事项，须由县直部门办理，不得指派给乡镇"
            return "", [Refusal(AuthorityRefusal.COUNTY_ONLY, reason)]
        case Authority.ASSIST:
            reason = f"{item.name}为协助事项，由县直部门牵头、乡镇协助，不得由乡镇单位牵头办理"
            return "", [Refusal(AuthorityRefusal.ASSIST, reason)]
        case Authority.OUT_OF_LIST:
            if (
                admission is not None
                and admission.matter_code == item.code
                and admission.township == township
            ):
                grounds = (
                    f"经{admission.approving_body}准入批准（{admission.document_no}），"
                    f"由{holder}办理"
                )
                return grounds, []
            reason = "该事项不在本乡镇赋权清单内，须经县政府准入批准后方可指派"
            return "", [Refusal(AuthorityRefusal.NOT_ADMITTED, reason)]
    if item.code not in claims:
        reason = f"本乡镇未认领{item.name}，该事项由县直部门办理，不得指派给乡镇单位"
        return "", [Refusal(AuthorityRefusal.UNCLAIMED, reason)]
    return f"{AUTHORITY[item.authority]}事项，本乡镇已认领，由{holder}办理", []


def assistance_refusal(
    item: MatterItem | None, lead: Unit | None, assisting: Unit | None, township: str | None
) -> str | None:
    """Why the department's unit ``lead`` may not ask ``assisting`` to assist on a case of
    ``item`` in ``township`` (协助: "镇政府应指定综合执法联动中心积极协助"); None if it may. Only
    an assist matter, led by a county department's unit, is assisted; the assisting unit is
    one of the case's township (``None``: whether any may be asked, the unit not chosen yet)."""
    if item is None or item.authority is not Authority.ASSIST:
        return "仅协助事项可请求乡镇协助：该案件事项不是县直部门牵头、乡镇协助的事项"
    if lead is None or lead.kind is not UnitKind.COUNTY_DEPARTMENT:
        return "仅由县直部门牵头办理的案件可请求乡镇协助"
    if assisting is None:
        return None
    if assisting.kind is UnitKind.COUNTY_DEPARTMENT or assisting.township != township:
        return f"{assisting.name}不是本案所在乡镇（{township or '未定位'}）的单位，不能协助本案"
    return None
