"""Words shared beyond the service that owns them: the states a case can be in, and the kinds of
administrative penalty a decision may impose.

Dispatch owns the lifecycle (services/dispatch/lifecycle.py); the county's whistle rules in the
reference data name states too (reference/county.py), and so do the case views. The penalty
kinds are named by the catalogue's entrusted ceilings and 重大执法决定 list (reference data) and
by a resolution's event.
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    TRIAGE = "triage"  # waiting in a township's (or the county's) queue for a dispatcher
    ARBITRATION = "arbitration"  # rejected twice: the county decides
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    # A penalty decision on the county's 重大执法决定 list waits for legal review (法制审核)
    # before it takes effect: resolved on approval, back in progress when returned.
    LEGAL_REVIEW = "legal_review"
    RESOLVED = "resolved"
    CLOSED = "closed"


class PenaltyKind(StrEnum):
    """The kinds of administrative penalty (《中华人民共和国行政处罚法》第九条)."""

    WARNING = "warning"  # 警告
    CRITICISM = "criticism"  # 通报批评
    FINE = "fine"  # 罚款
    CONFISCATION = "confiscation"  # 没收违法所得、没收非法财物
    LICENCE_SUSPENSION = "licence_suspension"  # 暂扣许可证件
    LICENCE_REVOCATION = "licence_revocation"  # 吊销许可证件
    BUSINESS_RESTRICTION = "business_restriction"  # 限制开展生产经营活动
    SUSPENSION = "suspension"  # 责令停产停业
    CLOSURE = "closure"  # 责令关闭
