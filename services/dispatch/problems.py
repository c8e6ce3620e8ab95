"""The problem documents (RFC 9457) dispatch's routers answer the case service's refusals with:
one mapping, so that a refusal reads the same from every endpoint that can meet it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.dispatch.errors import (
    AdmissionRequired,
    AssignmentNotAuthorised,
    AssignmentRefusal,
    AssignmentRefused,
    AssistanceRefused,
    BeyondEntrustment,
    CaseNotFound,
    CertificateRequired,
    ClosingBeforeFollowUp,
    ContactRefused,
    DispatchError,
    NotAwaitingAdmission,
    NotAwaitingLegalReview,
    NotPermitted,
    ReferralKeyReused,
    ReferralRefused,
    SplitRefused,
    StaleVersion,
    TransitionRefused,
    UnknownEvidence,
    WhistleRefused,
)
from services.dispatch.merging import SplitRefusal
from services.dispatch.views import etag
from services.runtime.problems import Problem

_ASSIGNMENT: dict[AssignmentRefusal, tuple[int, str]] = {
    AssignmentRefusal.UNKNOWN_UNIT: (422, "Unknown unit"),
    AssignmentRefusal.FOREIGN_UNIT: (403, "Forbidden"),
    AssignmentRefusal.MATTER_NEEDED: (422, "Matter needed"),
    AssignmentRefusal.STAFF_CANNOT_ENFORCE: (422, "Staff cannot enforce"),
}

_SPLIT = {
    SplitRefusal.ORIGINAL_TIP: "The case's own tip cannot be split off: only a merged tip can.",
    SplitRefusal.CLOSED: "The case is closed; reopen it before splitting it.",
}


def problem(error: DispatchError) -> Problem:
    """The problem a router answers ``error`` with."""
    match error:
        case CaseNotFound():
            return Problem(404, "Not Found", f"No case {error.case_id} that you may see.")
        case NotPermitted():
            return Problem(403, "Forbidden", str(error))
        case NotAwaitingAdmission() | NotAwaitingLegalReview():
            return Problem(409, "Conflict", str(error))
        case BeyondEntrustment():
            return Problem(
                422,
                "超出委托范围",
                error.detail,
                type_="https://whistle.example/problems/beyond-entrustment",
                entrusted_ceiling=error.ceiling.model_dump(mode="json"),
            )
        case ReferralKeyReused():
            return Problem(
                409,
                "Idempotency-Key 重复使用",
                "该 Idempotency-Key 已用于内容不同的另一次移送：重试须与原请求完全相同，"
                "新的移送请使用新的 Idempotency-Key。",
                type_="https://whistle.example/problems/idempotency-key-reused",
            )
        case UnknownEvidence():
            return Problem(
                422,
                "证据文件不存在",
                f"以下证据文件未上传到本案：{'、'.join(error.ids)}。请先上传证据"
                "（POST /v1/cases/{id}/evidence），再提交本步骤；本步骤未保存。",
                type_="https://whistle.example/problems/unknown-evidence",
                unknown=error.ids,
            )
        case CertificateRequired():
            return Problem(
                422,
                "无有效执法证",
                error.detail,
                type_="https://whistle.example/problems/no-valid-certificate",
            )
        case StaleVersion():
            return Problem(
                412,
                "Precondition Failed",
                f"The case changed since you saw it (now version {error.current}); reload it.",
                headers={"ETag": etag(error.current)},
            )
        case AdmissionRequired():
            return Problem(
                409,
                "Conflict",
                "该事项不在本乡镇赋权清单内，须经县政府准入批准后方可指派"
                "（县级督办提出准入：POST /v1/cases/{id}/admission）。",
                allowed_actions=[],
            )
        case ClosingBeforeFollowUp():
            return Problem(
                409,
                "Conflict",
                "案件办结后须先回访群众：群众评价（网站、微信或 12345 回访电话）后即可结案，"
                f"否则须待 {error.not_before:%Y-%m-%d %H:%M} 回访期满后方可结案。",
                type_="https://whistle.example/problems/follow-up-pending",
                may_close_at=error.not_before.isoformat(),
            )
        case ContactRefused():
            return Problem(
                422,
                "Unprocessable Content",
                "联系群众的时间须在立案之后、当前时间之前。",
                type_="https://whistle.example/problems/contact-time",
                earliest=error.earliest.isoformat(),
                latest=error.latest.isoformat(),
            )
        case TransitionRefused():
            return Problem(
                409, "Conflict", error.reason, allowed_actions=[a.value for a in error.allowed]
            )
        case AssignmentNotAuthorised():
            return Problem(
                422,
                "Assignment not authorised",
                str(error),
                rules=[r.rule.value for r in error.refusals],
                refusals=[{"rule": r.rule.value, "reason": r.reason} for r in error.refusals],
            )
        case AssistanceRefused():
            return Problem(
                422,
                "不能请求协助",
                error.detail,
                type_="https://whistle.example/problems/assistance-refused",
            )
        case ReferralRefused():
            return Problem(
                422,
                "不予移送",
                error.detail,
                type_="https://whistle.example/problems/referral-refused",
                rules=[r.rule.value for r in error.refusals],
                refusals=[{"rule": r.rule.value, "reason": r.reason} for r in error.refusals],
            )
        case AssignmentRefused():
            status, title = _ASSIGNMENT[error.refusal]
            return Problem(status, title, error.detail)
        case SplitRefused() if error.refusal in _SPLIT:
            return Problem(409, "Conflict", _SPLIT[error.refusal])
        case SplitRefused():
            return Problem(
                422, "Not a merged tip", f"Tip {error.tip_id} has not joined this case by merge."
            )
        case WhistleRefused():
            return Problem(
                422,
                "Whistle not allowed",
                str(error),
                rules=[r.rule for r in error.refusals],
                refusals=[{"rule": r.rule, "reason": r.reason} for r in error.refusals],
            )
    raise error  # a refusal no router meets yet: a bug to show, not to hide behind a 4xx


@contextmanager
def answered_as_problems() -> Iterator[None]:
    """Within it, the case service's refusals leave as their problem documents."""
    try:
        yield
    except DispatchError as error:
        raise problem(error) from error
