"""Deadline policies (接诉即办), loaded from ``deploy/config/policies.yaml``.

A policy sets a case's clocks (first response, resolution) and its escalation ladder: a warning
at ``warn_at_fraction`` of the time, overdue at the deadline, a chase (催办) ``chase_after``
later, supervision (督办, and the leadership stream) ``supervise_after`` after the chase. It
also sets how long a legal review (法制审核) of a major penalty decision may take
(``legal_review``), on the same ladder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class Duration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    amount: float = Field(gt=0)
    unit: Literal["hours", "working_days"]

    @model_validator(mode="before")
    @classmethod
    def _seconds_are_hours(cls, data: Any) -> Any:
        # The demo profile's second-scale durations are natural time: kept as hours, so that
        # deadline arithmetic knows only natural time and working days.
        if isinstance(data, dict) and data.get("unit") == "seconds":
            amount = data.get("amount")
            if isinstance(amount, int | float) and amount > 0:
                return {**data, "amount": amount / 3600, "unit": "hours"}
        return data

    @model_validator(mode="after")
    def _whole_working_days(self) -> Duration:
        # A fraction of a working day has no agreed meaning across a weekend; use hours.
        if self.unit == "working_days" and not float(self.amount).is_integer():
            raise ValueError("working_days must be a whole number; give shorter spans in hours")
        return self


class DeadlinePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    name: str
    urgency: Literal["emergency", "utilities", "general", "complex"]
    placeholder: bool = False
    first_response: Duration
    resolution: Duration
    warn_at_fraction: float = Field(default=0.75, gt=0, lt=1)
    # The escalation ladder after a missed deadline (services/escalation/ladder.py): chase
    # (催办) this long after the deadline, supervise (督办) this long after the chase.
    chase_after: Duration = Duration(amount=1, unit="working_days")
    supervise_after: Duration = Duration(amount=3, unit="working_days")
    # The whistle protocol (吹哨报到): a summoned department reports in (报到) within this; its
    # reply is due with the case's resolution (services/escalation/whistle_protocol.py).
    whistle_receipt: Duration = Duration(amount=1, unit="working_days")
    # 法制审核: a legal reviewer approves or returns a major penalty decision within this of
    # its request (services/escalation/clocks.py, start_legal_review_clock). A PLACEHOLDER: the
    # county confirms it from its own 重大执法决定法制审核 rules.
    legal_review: Duration = Duration(amount=5, unit="working_days")


class PolicyBook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str
    policies: list[DeadlinePolicy] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> PolicyBook:
        ids = [p.id for p in self.policies]
        if len(ids) != len(set(ids)):
            raise ValueError("policy ids must be unique")
        return self

    def get(self, policy_id: str) -> DeadlinePolicy | None:
        return next((p for p in self.policies if p.id == policy_id), None)

    def for_urgency(self, urgency: str) -> DeadlinePolicy | None:
        """The first policy for an urgency: what a whistle of that urgency runs under."""
        return next((p for p in self.policies if p.urgency == urgency), None)


class PolicyError(Exception):
    pass


def policies_file(config_dir: Path, profile: str = "default") -> Path:
    """The policy book of a profile: ``policies.yaml``, or ``policies.<profile>.yaml`` (the
    ``demo`` profile's second-scale durations let a running stack show its whole ladder)."""
    return config_dir / ("policies.yaml" if profile == "default" else f"policies.{profile}.yaml")


def load_policies(path: Path) -> PolicyBook:
    try:
        return PolicyBook.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
