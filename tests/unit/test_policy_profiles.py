"""Policy profiles: the default book and the demo book with second-scale durations, chosen by
``WHISTLE_POLICY_PROFILE``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.escalation.calendar import load_calendar
from services.escalation.deadlines import deadlines_for
from services.escalation.ladder import first_step, next_step
from services.escalation.policies import (
    Duration,
    PolicyError,
    load_policies,
    policies_file,
)
from services.runtime.settings import Settings

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"


def test_the_profile_setting_picks_the_book(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().policy_profile == "default"
    assert policies_file(CONFIG) == CONFIG / "policies.yaml"
    monkeypatch.setenv("WHISTLE_POLICY_PROFILE", "demo")
    profile = Settings().policy_profile
    assert policies_file(CONFIG, profile) == CONFIG / "policies.demo.yaml"


def test_the_demo_book_has_every_policy_the_catalogue_names() -> None:
    default = load_policies(CONFIG / "policies.yaml")
    demo = load_policies(policies_file(CONFIG, "demo"))
    assert {p.id for p in demo.policies} == {p.id for p in default.policies}


def test_demo_deadlines_and_ladder_fall_within_seconds() -> None:
    demo = load_policies(policies_file(CONFIG, "demo"))
    calendar = load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")
    general = demo.get("P-GENERAL")
    assert general is not None
    # Saturday night: natural time, no waiting for Monday's working hours.
    start = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    first, resolution = deadlines_for(general, start, calendar)
    assert first.due_at - start == timedelta(seconds=60)
    assert first.warn_at - start == timedelta(seconds=45)
    assert resolution.due_at - start == timedelta(seconds=180)

    ladder = [first_step(first.warn_at)]
    while (
        following := next_step(
            ladder[-1].step,
            ladder[-1].due_at,
            due_at=first.due_at,
            policy=general,
            calendar=calendar,
        )
    ) is not None:
        ladder.append(following)
    assert [(s.step, round((s.due_at - start).total_seconds())) for s in ladder] == [
        ("warning", 45),
        ("overdue", 60),
        ("chase", 80),
        ("supervise", 100),
    ]
    for policy in demo.policies:
        for duration in (policy.first_response, policy.resolution, policy.chase_after):
            assert duration.unit == "hours" and duration.amount * 3600 <= 300


def test_seconds_are_kept_as_natural_time() -> None:
    assert Duration.model_validate({"amount": 90, "unit": "seconds"}) == Duration(
        amount=0.025, unit="hours"
    )
    with pytest.raises(ValueError):
        Duration.model_validate({"amount": 0, "unit": "seconds"})


def test_an_unknown_profile_is_an_error_at_load() -> None:
    with pytest.raises(PolicyError, match=r"policies\.nonesuch\.yaml"):
        load_policies(policies_file(CONFIG, "nonesuch"))
