"""Deadline arithmetic on the county's business calendar, and the shipped deadline policies.

The holiday periods themselves (Spring Festival, National Day, 调休) are tested in
test_calendar.py; the dates here are ordinary weeks, where only weekends and working hours count.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from reference.county import ReferenceData, load_reference
from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.deadlines import add_duration, deadlines_for, legal_review_deadline
from services.escalation.policies import DeadlinePolicy, Duration, PolicyBook, load_policies
from services.escalation.recompute import recount

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"
SHANGHAI = ZoneInfo("Asia/Shanghai")

# Calendar used below (2026): Wed 18 Nov, Fri 20 Nov, Sat 21, Sun 22, Mon 23, Fri 27, Mon 30 Nov;
# no holidays. Working hours (calendar.yaml): 08:30-12:00 and 14:30-17:30, 6.5 hours a day.


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def hours(n: float) -> Duration:
    return Duration(amount=n, unit="hours")


def working_days(n: float) -> Duration:
    return Duration(amount=n, unit="working_days")


@pytest.fixture(scope="module")
def book() -> PolicyBook:
    return load_policies(CONFIG / "policies.yaml")


@pytest.fixture(scope="module")
def ref() -> ReferenceData:
    return load_reference(CONFIG)


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return load_calendar(CONFIG / "calendar.yaml", "Asia/Shanghai")


# ---------------------------------------------------------------- natural hours


@pytest.mark.parametrize(
    ("start", "amount", "due"),
    [
        (local(2026, 11, 18, 10, 0), 2, local(2026, 11, 18, 12, 0)),
        (local(2026, 11, 18, 23, 0), 2, local(2026, 11, 19, 1, 0)),  # across midnight
        (local(2026, 11, 20, 22, 0), 24, local(2026, 11, 21, 22, 0)),  # into the weekend
        (local(2026, 11, 21, 9, 30), 24, local(2026, 11, 22, 9, 30)),  # Saturday start
        (local(2026, 11, 20, 18, 0), 72, local(2026, 11, 23, 18, 0)),  # whole weekend
        (utc(2026, 11, 20, 15, 0), 2, utc(2026, 11, 20, 17, 0)),  # UTC start, local midnight
        (utc(2026, 11, 20, 10, 0), 1.5, utc(2026, 11, 20, 11, 30)),
        (local(2026, 10, 1, 3, 0), 24, local(2026, 10, 2, 3, 0)),  # holidays do not count either
    ],
)
def test_hours_are_natural_time(
    start: datetime, amount: float, due: datetime, cal: BusinessCalendar
) -> None:
    result = add_duration(start, hours(amount), cal)
    assert result == due
    assert result.timestamp() - start.timestamp() == amount * 3600


# ---------------------------------------------------------------- working days


def test_one_working_day_from_friday_morning_is_monday_morning(cal: BusinessCalendar) -> None:
    start = local(2026, 11, 20, 10, 0)
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 23, 10, 0)


def test_working_days_from_a_utc_clock_are_counted_in_local_time(cal: BusinessCalendar) -> None:
    # The services' clock runs in UTC: Friday 10:00 in the county is 02:00Z.
    start = utc(2026, 11, 20, 2, 0)
    due = add_duration(start, working_days(1), cal)
    assert due == local(2026, 11, 23, 10, 0)
    assert due.utcoffset() == timedelta(0)  # returned in the start's own zone


@pytest.mark.parametrize(
    "start", [local(2026, 11, 21, 15, 0), local(2026, 11, 22, 9, 0), local(2026, 11, 21, 0, 0)]
)
def test_clock_started_at_the_weekend_counts_from_monday(
    start: datetime, cal: BusinessCalendar
) -> None:
    # Monday's first working time is 08:30, so the clock runs from then.
    monday = local(2026, 11, 23, 8, 30)
    assert add_duration(start, working_days(1), cal) == add_duration(monday, working_days(1), cal)
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 24, 8, 30)


@pytest.mark.parametrize(
    ("start", "due"),
    [
        (local(2026, 11, 18, 10, 0), local(2026, 11, 27, 10, 0)),  # Wed → Fri next week
        (local(2026, 11, 23, 9, 0), local(2026, 12, 2, 9, 0)),  # Mon → Wed after next weekend
        (local(2026, 11, 20, 16, 0), local(2026, 12, 1, 16, 0)),  # Fri → Tue, two weekends
        (local(2026, 11, 21, 11, 0), local(2026, 12, 2, 8, 30)),  # Sat → from Monday 08:30
    ],
)
def test_seven_working_days_span_weekends(
    start: datetime, due: datetime, cal: BusinessCalendar
) -> None:
    assert add_duration(start, working_days(7), cal) == due


def test_due_dates_fall_in_working_hours_of_working_days(cal: BusinessCalendar) -> None:
    start = local(2026, 11, 16, 8, 0)
    for offset in range(0, 14 * 24, 5):  # every 5 hours over two weeks
        begin = start + timedelta(hours=offset)
        for amount in (1, 2, 5, 7, 15):
            due = add_duration(begin, working_days(amount), cal).astimezone(SHANGHAI)
            assert due.weekday() < 5, (begin, amount, due)
            assert "08:30" <= f"{due:%H:%M}" < "12:00" or "14:30" <= f"{due:%H:%M}" < "17:30"
            assert due > begin


@pytest.mark.parametrize("amount", [0.5, 1.5])
def test_fractional_working_days_are_refused_at_load(amount: float) -> None:
    # Half a working day from Friday evening has no agreed meaning; the policy must say hours.
    with pytest.raises(ValidationError, match="whole number"):
        Duration(amount=amount, unit="working_days")


def test_the_last_minute_of_friday_working_hours_counts_from_friday(cal: BusinessCalendar) -> None:
    start = utc(2026, 11, 20, 9, 29)  # Fri 17:29 in the county
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 23, 17, 29)


def test_friday_2359_local_is_after_hours_and_counts_from_monday(cal: BusinessCalendar) -> None:
    # Read as UTC (15:59Z) it would be Friday afternoon, inside working hours.
    start = utc(2026, 11, 20, 15, 59)
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 24, 8, 30)


def test_just_after_local_midnight_saturday_while_utc_is_still_friday(
    cal: BusinessCalendar,
) -> None:
    # 16:30Z Friday is already 00:30 Saturday in the county: the clock runs from Monday.
    start = utc(2026, 11, 20, 16, 30)
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 24, 8, 30)


def test_just_after_local_midnight_monday_while_utc_is_still_sunday(
    cal: BusinessCalendar,
) -> None:
    # 16:30Z Sunday is 00:30 Monday in the county: the clock runs from Monday 08:30, that
    # same day, not from Tuesday (or from 08:30Z, were the day taken in UTC).
    start = utc(2026, 11, 22, 16, 30)
    assert add_duration(start, working_days(1), cal) == local(2026, 11, 24, 8, 30)


def test_a_start_in_the_lunch_break_counts_from_the_afternoon(cal: BusinessCalendar) -> None:
    start = local(2026, 11, 18, 12, 40)
    assert add_duration(start, working_days(2), cal) == local(2026, 11, 20, 14, 30)


# ---------------------------------------------------------------- deadlines_for


def _policy(first: Duration, resolution: Duration, fraction: float = 0.75) -> DeadlinePolicy:
    return DeadlinePolicy(
        id="P-TEST",
        name="测试",
        urgency="general",
        first_response=first,
        resolution=resolution,
        warn_at_fraction=fraction,
    )


def test_deadlines_for_general_policy(book: PolicyBook, cal: BusinessCalendar) -> None:
    policy = book.get("P-GENERAL")
    assert policy is not None
    start = utc(2026, 11, 20, 2, 0)  # Friday 10:00 local
    computed = {d.kind: d for d in deadlines_for(policy, start, cal)}
    assert set(computed) == {"first_response", "resolution"}
    assert computed["first_response"].due_at == local(2026, 11, 23, 10, 0)
    assert computed["resolution"].due_at == local(2026, 12, 1, 10, 0)
    # Warnings at 75 % of the working time. One day is 6.5 h; 75 % is 4 h 52.5 min: Friday
    # 10:00-12:00 (2 h), then 2 h 52.5 min of the afternoon from 14:30.
    assert computed["first_response"].warn_at == local(2026, 11, 20, 17, 22, 30)
    # Seven days are 45.5 h; 75 % is 34 h 7.5 min = five days (to Fri 27 Nov 10:00) and
    # 1 h 37.5 min, all before noon. In natural time it would have been Saturday 28th 16:00.
    assert computed["resolution"].warn_at == local(2026, 11, 27, 11, 37, 30)


def test_deadlines_for_emergency_policy(book: PolicyBook, cal: BusinessCalendar) -> None:
    policy = book.get("P-EMERGENCY")
    assert policy is not None
    start = utc(2026, 11, 21, 3, 0)  # a Saturday: natural time ignores the weekend
    computed = {d.kind: d for d in deadlines_for(policy, start, cal)}
    assert computed["first_response"].due_at == start + timedelta(hours=2)
    assert computed["first_response"].warn_at == start + timedelta(minutes=90)
    assert computed["resolution"].due_at == start + timedelta(hours=24)
    assert computed["resolution"].warn_at == start + timedelta(hours=18)


def test_warn_at_follows_the_policys_fraction(cal: BusinessCalendar) -> None:
    start = local(2026, 11, 18, 8, 0)  # Wednesday, half an hour before work begins
    policy = _policy(hours(10), working_days(2), fraction=0.5)
    first, resolution = deadlines_for(policy, start, cal)
    assert first.warn_at == local(2026, 11, 18, 13, 0)
    assert resolution.due_at == local(2026, 11, 20, 8, 30)
    # Half of two days' working time is all of Wednesday's, used up at 17:30: the warning
    # falls when work resumes, Thursday 08:30.
    assert resolution.warn_at == local(2026, 11, 19, 8, 30)


def test_a_legal_review_is_due_five_working_days_after_its_request_over_the_weekend(
    book: PolicyBook, cal: BusinessCalendar
) -> None:
    policy = book.get("P-GENERAL")
    assert policy is not None and policy.legal_review == working_days(5)
    review = legal_review_deadline(policy, local(2026, 11, 19, 15, 0), cal)  # Thursday
    assert (review.kind, review.due_at) == ("legal_review", local(2026, 11, 26, 15, 0))
    # 75 % of 32.5 working hours is 24 h 22.5 min: Thursday 2.5 h, Friday, Monday and Tuesday
    # 6.5 h each (22 h), then 2 h 22.5 min of Wednesday from 08:30.
    assert review.warn_at == local(2026, 11, 25, 10, 52, 30)


def test_a_provisional_legal_review_is_counted_again_by_its_own_rule(
    book: PolicyBook, cal: BusinessCalendar
) -> None:
    policy = book.get("P-GENERAL")
    assert policy is not None
    start = local(2026, 11, 19, 15, 0)
    assert recount(policy, "legal_review", start, cal) == legal_review_deadline(policy, start, cal)


def test_a_policy_without_a_legal_review_time_has_five_working_days() -> None:
    assert _policy(hours(2), hours(24)).legal_review == working_days(5)


# ---------------------------------------------------------------- the shipped policies


def test_shipped_policies_load(book: PolicyBook) -> None:
    assert {p.id for p in book.policies} >= {"P-EMERGENCY", "P-UTILITIES", "P-GENERAL", "P-COMPLEX"}
    for policy in book.policies:
        assert 0 < policy.warn_at_fraction < 1
        assert policy.placeholder  # the defaults are placeholders until the county confirms


def test_each_policys_urgency_matches_its_id(book: PolicyBook) -> None:
    for policy in book.policies:
        assert policy.id == f"P-{policy.urgency.upper()}"


def test_shipped_durations_match_the_published_defaults(book: PolicyBook) -> None:
    def get(pid: str) -> DeadlinePolicy:
        policy = book.get(pid)
        assert policy is not None
        return policy

    assert get("P-EMERGENCY").first_response == hours(2)
    assert get("P-EMERGENCY").resolution == hours(24)
    assert get("P-UTILITIES").first_response == hours(2)
    assert get("P-UTILITIES").resolution == hours(24)
    assert get("P-GENERAL").first_response == working_days(1)
    assert get("P-GENERAL").resolution == working_days(7)
    assert get("P-COMPLEX").first_response == working_days(1)
    assert get("P-COMPLEX").resolution == working_days(15)


def test_every_catalogue_item_names_an_existing_policy(
    book: PolicyBook, ref: ReferenceData
) -> None:
    missing = [i.code for i in ref.catalogue.items if book.get(i.deadline_policy) is None]
    assert missing == []


def test_every_items_policy_matches_its_default_urgency(
    book: PolicyBook, ref: ReferenceData
) -> None:
    mismatched = [
        (item.code, item.default_urgency.value, item.deadline_policy)
        for item in ref.catalogue.items
        if (policy := book.get(item.deadline_policy)) is not None
        and policy.urgency != item.default_urgency.value
    ]
    assert mismatched == []
