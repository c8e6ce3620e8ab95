"""What a step taken on the ground records, and when it is refused: who acted with which
执法证, where, and which stored files it cites ("执法证据有留存", 全过程记录).

- **The officer** (:func:`officer_record`): the acting person is the token's subject, a staff
  member in the reference data; on an enforcement matter their 执法证 number is recorded if
  it is valid on the step's date (the county's). A step by someone without one on a matter
  whose action type is ``penalty`` is refused: only certified officers carry out a penalty
  matter (authority.py's ``ENFORCEMENT_ACTIONS``, the rule an assignment is judged by too). A
  public-service request needs no certificate.
- **The place** (:func:`step_place`): the point the officer gives, if any, and the case's grid.
- **The evidence**: every SHA-256 a step cites must name a file stored for that case; the
  unknown ones are named (``services/runtime/uploads.not_stored``, the rule escalation holds a
  department's reply to as well).

Plain data and functions: no database, no clock, no HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

from contracts.events import GeoPoint
from reference.county import MatterItem, Staff, Unit
from services.dispatch.authority import ENFORCEMENT_ACTIONS


@dataclass(frozen=True)
class OfficerRecord:
    """Who took the step, as recorded: their certificate number, or None when the matter
    needs none (or they hold none valid on a matter that is not a penalty)."""

    staff_id: str
    certificate_number: str | None


def find_staff(units: Iterable[Unit], staff_id: str) -> Staff | None:
    """The staff member ``staff_id`` of any unit, or None (an account that is no officer)."""
    return next((s for u in units for s in u.staff if s.id == staff_id), None)


def officer_record(
    staff_id: str, staff: Staff | None, item: MatterItem | None, day: date
) -> OfficerRecord | str:
    """The step's officer record, or why the step is refused (in Chinese): ``staff`` is the
    reference data's record of ``staff_id`` (None if there is none), ``item`` the case's
    matter, ``day`` the step's date in the county."""
    if item is None or item.is_service:
        return OfficerRecord(staff_id, None)
    certificate = staff.certificate if staff is not None else None
    if certificate is not None and certificate.valid_on(day):
        return OfficerRecord(staff_id, certificate.number)
    if item.action_type not in ENFORCEMENT_ACTIONS:
        return OfficerRecord(staff_id, None)
    if staff is None:
        who = f"{staff_id}不在执法人员名录中，无执法证"
    elif certificate is None:
        who = f"{staff.name}（{staff_id}）未持有执法证"
    else:
        who = (
            f"{staff.name}（{staff_id}）的执法证 {certificate.number} 有效期为"
            f"{certificate.valid_from}至{certificate.valid_until}，{day}不在有效期内"
        )
    return f"{who}，不得办理行政处罚事项（{item.name}）的执法步骤：须由持有效执法证的执法人员办理。"


@dataclass(frozen=True)
class StepPlace:
    """Where a step was taken: the case's grid, and the officer's point if given."""

    grid_id: str | None
    point: GeoPoint | None

    def record(self) -> dict[str, Any]:
        """As the step's event carries it (``FieldStep.grid_id``, ``FieldStep.point``)."""
        return {
            "grid_id": self.grid_id,
            "point": self.point.model_dump(mode="json") if self.point else None,
        }


def step_place(point: GeoPoint | None, case_grid: str | None) -> StepPlace:
    """The place of a step: the point given with it, if any, and the case's grid."""
    return StepPlace(case_grid, point)
