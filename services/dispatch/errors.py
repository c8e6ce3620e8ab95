"""What the case service refuses, and why: domain errors, raised by cases.py.

Each carries what an edge needs to say it in its own terms — a router answers it as the problem
document problems.py maps it to, a consumer dead-letters or ignores the event — and none of them
knows HTTP or Kafka.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from uuid import UUID

from reference.county import EntrustedCeiling
from services.dispatch import authority
from services.dispatch.lifecycle import Action
from services.dispatch.merging import SplitRefusal
from services.dispatch.whistles import Refusal


class DispatchError(Exception):
    """A command the case service refused; nothing it did is kept."""


class CaseNotFound(DispatchError):
    """No such case, or none the caller may see: a case outside their scope is not theirs to
    know about."""

    def __init__(self, case_id: UUID) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


class NotPermitted(DispatchError):
    """The caller may see the case but not take this step on it."""


class StaleVersion(DispatchError):
    """The caller acted on a version of the case that is no longer the current one."""

    def __init__(self, current: int) -> None:
        super().__init__(f"the case is now at version {current}")
        self.current = current


class TransitionRefused(DispatchError):
    """The lifecycle does not allow this step now; ``allowed`` are the steps it would."""

    def __init__(self, reason: str, allowed: tuple[Action, ...]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.allowed = allowed


class ClosingBeforeFollowUp(DispatchError):
    """回访 first: the case may close once its follow-up is recorded or at ``not_before``."""

    def __init__(self, not_before: datetime) -> None:
        super().__init__(f"the case may close from {not_before.isoformat()}")
        self.not_before = not_before


class ContactRefused(DispatchError):
    """A contact time outside the case's life so far (``earliest`` to ``latest``)."""

    def __init__(self, earliest: datetime, latest: datetime) -> None:
        super().__init__(f"a contact time must be between {earliest} and {latest}")
        self.earliest = earliest
        self.latest = latest


class AdmissionRequired(TransitionRefused):
    """An out-of-list case is assigned only by the county's admission decision (准入)."""

    def __init__(self) -> None:
        super().__init__("an out-of-list case is admitted by the county", ())


class NotAwaitingAdmission(DispatchError):
    """An admission step (proposal, decline, approval) for a case not waiting for it."""


class NotAwaitingLegalReview(DispatchError):
    """A legal review decision for a case with no penalty decision waiting for one."""


class BeyondEntrustment(DispatchError):
    """A penalty decided in an entrusting department's name goes beyond the entrusted ceiling
    (enforcement.py); ``detail`` names the ceiling in Chinese."""

    def __init__(self, detail: str, ceiling: EntrustedCeiling) -> None:
        super().__init__(detail)
        self.detail = detail
        self.ceiling = ceiling


class AssignmentNotAuthorised(DispatchError):
    """The authority rule (authority.py) refuses to give the matter to the unit; every rule
    that refuses is named."""

    def __init__(self, refusals: tuple[authority.Refusal, ...]) -> None:
        super().__init__("；".join(r.reason for r in refusals))
        self.refusals = refusals


class AssignmentRefusal(StrEnum):
    UNKNOWN_UNIT = "unknown_unit"
    FOREIGN_UNIT = "foreign_unit"  # a township assigns only to its own units
    MATTER_NEEDED = "matter_needed"
    STAFF_CANNOT_ENFORCE = "staff_cannot_enforce"  # no valid enforcement certificate


class AssignmentRefused(DispatchError):
    def __init__(self, refusal: AssignmentRefusal, detail: str) -> None:
        super().__init__(detail)
        self.refusal = refusal
        self.detail = detail


class SplitRefused(DispatchError):
    def __init__(self, refusal: SplitRefusal, tip_id: UUID) -> None:
        super().__init__(f"tip {tip_id} cannot be split off: {refusal.value}")
        self.refusal = refusal
        self.tip_id = tip_id


class WhistleRefused(DispatchError):
    """The county's whistle rules refused the whistle; every rule that refused it is named."""

    def __init__(self, refusals: tuple[Refusal, ...]) -> None:
        super().__init__("；".join(r.reason for r in refusals))
        self.refusals = refusals


class TipNotOfCase(DispatchError):
    """An event about a tip of a case names a tip that is not one of the case's."""

    def __init__(self, tip_id: UUID, case_id: UUID) -> None:
        super().__init__(f"tip {tip_id} is not a tip of case {case_id}")
        self.tip_id = tip_id
        self.case_id = case_id


class ReferralRefused(DispatchError):
    """A county department's referral (移送) the rules refuse: the matter is not one a
    township may lead (``refusals``, from the authority rule), or the referral names what the
    reference data does not know (``detail`` only)."""

    def __init__(self, detail: str, refusals: tuple[authority.Refusal, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.refusals = refusals


class AssistanceRefused(DispatchError):
    """A request for the township's assistance (协助) the rule refuses; ``detail`` in Chinese."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class ReferralKeyReused(DispatchError):
    """A referral's Idempotency-Key was used before by the department for another body: not a
    retry."""


class UnknownEvidence(DispatchError):
    """A step cites files never stored as evidence for its case (field_record.py): ``ids``
    are the unknown SHA-256s, in the order cited."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"unknown evidence: {', '.join(ids)}")
        self.ids = ids


class CertificateRequired(DispatchError):
    """The acting officer holds no 执法证 valid on the step's date, and the matter is a
    penalty matter (field_record.py); ``detail`` in Chinese."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
