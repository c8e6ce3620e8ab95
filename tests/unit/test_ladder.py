"""The escalation ladder's plain functions: what comes after each step, and when."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.ladder import LADDER, first_step, lateness, next_step
from services.escalation.policies import DeadlinePolicy, Duration, load_policies

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=SHANGHAI)


@pytest.fixture(scope="module")
def calendar() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


@pytest.fixture(scope="module")
def general() -> DeadlinePolicy:
    policy = load_policies(CONFIG / "policies.yaml").get("P-GENERAL")
    assert policy is not None
    return policy


def _climb(
    policy: DeadlinePolicy, calendar: BusinessCalendar, warn_at: datetime, due_at: datetime
) -> list[tuple[str, datetime]]:
    planned = first_step(warn_at)
    steps = []
    while True:
        steps.append((planned.step, planned.due_at))
        following = next_step(
            planned.step, planned.due_at, due_at=due_at, policy=policy, calendar=calendar
        )
        if following is None:
            return steps
        planned = following


def test_the_ladder_of_a_general_case_crosses_the_weekend_in_working_days(
    general: DeadlinePolicy, calendar: BusinessCalendar
) -> None:
    # First response of a case assigned Thursday 19 Nov 2026 10:00: warned at 75 % of one
    # working day (6.5 h → 4 h 52 min 30 s of working time: 10:00–12:00, 14:30–17:22:30), due
    # Friday 10:00, chased one working day later (Monday, over the weekend), supervised three
    # working days after the chase (Thursday).
    assert _climb(general, calendar, local(2026, 11, 19, 17, 22, 30), local(2026, 11, 20, 10)) == [
        ("warning", local(2026, 11, 19, 17, 22, 30)),
        ("overdue", local(2026, 11, 20, 10)),
        ("chase", local(2026, 11, 23, 10)),
        ("supervise", local(2026, 11, 26, 10)),
    ]
    assert LADDER == ("warning", "overdue", "chase", "supervise")


def test_chase_and_supervision_skip_the_national_day_holiday_and_work_the_make_up_saturday(
    general: DeadlinePolicy, calendar: BusinessCalendar
) -> None:
    # Overdue on Wednesday 30 Sep 2026 at 09:00; 1–7 October is the National Day holiday and
    # Saturday 10 October a make-up working day (calendar.yaml).
    chase = next_step(
        "overdue",
        local(2026, 9, 30, 9),
        due_at=local(2026, 9, 30, 9),
        policy=general,
        calendar=calendar,
    )
    assert chase is not None and chase.due_at == local(2026, 10, 8, 9)
    supervise = next_step(
        "chase", chase.due_at, due_at=local(2026, 9, 30, 9), policy=general, calendar=calendar
    )
    # Thu 8 → Fri 9 (1), Sat 10 make-up (2), Mon 12 (3).
    assert supervise is not None and supervise.due_at == local(2026, 10, 12, 9)
    assert supervise.provisional_reason is None


def test_hours_delays_are_natural_time(calendar: BusinessCalendar) -> None:
    emergency = load_policies(CONFIG / "policies.yaml").get("P-EMERGENCY")
    assert emergency is not None
    due = local(2026, 11, 21, 23, 30)  # a Saturday night
    chase = next_step("overdue", due, due_at=due, policy=emergency, calendar=calendar)
    assert chase is not None and chase.due_at == local(2026, 11, 22, 1, 30)
    supervise = next_step("chase", chase.due_at, due_at=due, policy=emergency, calendar=calendar)
    assert supervise is not None and supervise.due_at == local(2026, 11, 22, 5, 30)


def test_each_step_counts_from_when_the_previous_was_scheduled_not_when_it_fired(
    general: DeadlinePolicy, calendar: BusinessCalendar
) -> None:
    # The inputs are scheduled times only: a late firing cannot shift the ladder.
    due = local(2026, 11, 20, 10)
    overdue = next_step(
        "warning", local(2026, 11, 19, 17, 22, 30), due_at=due, policy=general, calendar=calendar
    )
    assert overdue is not None and (overdue.step, overdue.due_at) == ("overdue", due)
    assert (
        next_step(
            "supervise", local(2026, 11, 26, 10), due_at=due, policy=general, calendar=calendar
        )
        is None
    )


def test_a_step_reaching_a_year_without_a_calendar_is_provisional(
    general: DeadlinePolicy, calendar: BusinessCalendar
) -> None:
    due = local(2026, 12, 30, 10)
    chase = next_step("overdue", due, due_at=due, policy=general, calendar=calendar)
    assert chase is not None and chase.due_at == local(2026, 12, 31, 10)
    assert chase.provisional_reason is None
    supervise = next_step("chase", chase.due_at, due_at=due, policy=general, calendar=calendar)
    # Counted Monday to Friday in 2027: Fri 1 Jan, Mon 4, Tue 5.
    assert supervise is not None and supervise.due_at == local(2027, 1, 5, 10)
    assert "2027" in (supervise.provisional_reason or "")


def test_lateness_is_whole_seconds_and_never_negative() -> None:
    at = local(2026, 11, 20, 10)
    assert lateness(at, at) == 0
    assert lateness(at, at - timedelta(seconds=5)) == 0
    assert lateness(at, at + timedelta(seconds=90, milliseconds=999)) == 90
    assert lateness(at, at + timedelta(days=3)) == 3 * 86400


def test_the_ladder_has_defaults_and_validates_its_durations() -> None:
    policy = DeadlinePolicy.model_validate(
        {
            "id": "P",
            "name": "n",
            "urgency": "general",
            "first_response": {"amount": 1, "unit": "working_days"},
            "resolution": {"amount": 7, "unit": "working_days"},
        }
    )
    assert policy.chase_after == Duration(amount=1, unit="working_days")
    assert policy.supervise_after == Duration(amount=3, unit="working_days")
    with pytest.raises(ValueError, match="whole number"):
        DeadlinePolicy.model_validate(
            policy.model_dump() | {"chase_after": {"amount": 1.5, "unit": "working_days"}}
        )
    # A snapshot frozen before the ladder existed still reads, with the defaults.
    old = {k: v for k, v in policy.model_dump(mode="json").items() if "after" not in k}
    assert DeadlinePolicy.model_validate(old).supervise_after.amount == 3
