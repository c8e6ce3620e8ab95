"""Words shared beyond the service that owns them: the states a case can be in.

Dispatch owns the lifecycle (services/dispatch/lifecycle.py); the county's whistle rules in the
reference data name states too (reference/county.py), and so do the case views.
"""

from __future__ import annotations

from enum import StrEnum


class CaseStatus(StrEnum):
    TRIAGE = "triage"  # waiting in a township's (or the county's) queue for a dispatcher
    ARBITRATION = "arbitration"  # rejected twice: the county decides
    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
