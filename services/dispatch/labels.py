"""The Chinese words a person reads for dispatch's codes (urgency, case state, authority type,
resolution, penalty kind).

One vocabulary for every text dispatch writes (the whistle's refusal reasons) and for the
console, which receives it with its caller's scope (``/v1/console/me``) rather than keeping
a copy of its own. The words follow the domain's: 突发 and 疑难 as in the deadline table,
赋权/委托/协助/清单之外 as in the authority table, 县级专属 as routing says it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import TypeVar

from contracts.cases import CaseStatus, PenaltyKind
from reference.county import Authority, Urgency

URGENCY: Mapping[Urgency, str] = {
    Urgency.EMERGENCY: "突发",
    Urgency.UTILITIES: "水电气热",
    Urgency.GENERAL: "一般",
    Urgency.COMPLEX: "疑难",
}

STATUS: Mapping[CaseStatus, str] = {
    CaseStatus.TRIAGE: "待分拨",
    CaseStatus.ARBITRATION: "待县级裁定",
    CaseStatus.ASSIGNED: "已派单",
    CaseStatus.ACCEPTED: "已接单",
    CaseStatus.IN_PROGRESS: "处理中",
    CaseStatus.LEGAL_REVIEW: "待法制审核",
    CaseStatus.RESOLVED: "已办结",
    CaseStatus.CLOSED: "已结案",
}

AUTHORITY: Mapping[Authority, str] = {
    Authority.STATUTORY: "法定",
    Authority.DEVOLVED: "赋权",
    Authority.ENTRUSTED: "委托",
    Authority.ASSIST: "协助",
    Authority.COUNTY_ONLY: "县级专属",
    Authority.OUT_OF_LIST: "清单之外",
}

# How a case was resolved (CaseResolved.resolution): the console's timeline and the public
# enforcement record (publicity.py) say it in these words.
RESOLUTION: Mapping[str, str] = {
    "on_the_spot": "现场处置",
    "rectified": "责令整改",
    "penalised": "立案处罚",
    "unsubstantiated": "查无实据",
}

# The kinds of administrative penalty, as 行政处罚法 art. 9 names them.
PENALTY: Mapping[PenaltyKind, str] = {
    PenaltyKind.WARNING: "警告",
    PenaltyKind.CRITICISM: "通报批评",
    PenaltyKind.FINE: "罚款",
    PenaltyKind.CONFISCATION: "没收违法所得、没收非法财物",
    PenaltyKind.LICENCE_SUSPENSION: "暂扣许可证件",
    PenaltyKind.LICENCE_REVOCATION: "吊销许可证件",
    PenaltyKind.BUSINESS_RESTRICTION: "限制开展生产经营活动",
    PenaltyKind.SUSPENSION: "责令停产停业",
    PenaltyKind.CLOSURE: "责令关闭",
}

Code = TypeVar("Code", bound=StrEnum)


def joined(labels: Mapping[Code, str], codes: Iterable[Code]) -> str:
    """The codes' labels, as a Chinese list (甲、乙)."""
    return "、".join(labels[code] for code in codes)


def for_console() -> dict[str, dict[str, str]]:
    """Every vocabulary by its code's value, as the console's script looks words up."""
    return {
        "urgency": {code.value: word for code, word in URGENCY.items()},
        "status": {code.value: word for code, word in STATUS.items()},
        "authority": {code.value: word for code, word in AUTHORITY.items()},
        "resolution": dict(RESOLUTION),
        "penalty": {code.value: word for code, word in PENALTY.items()},
    }
