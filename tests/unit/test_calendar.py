"""The business calendar: the State Council's 2025 and 2026 notices with their make-up working
days (调休), the county's working hours, the refusal of what it does not know, and the years a
county that has not added this year's notice is missing (never a refusal).

Every expected date is worked out by hand from the notices (国办发明电〔2024〕12号 for 2025, the
notice of 4 November 2025 for 2026) and written out; working hours are 08:30-12:00 and
14:30-17:30.
"""

from __future__ import annotations

import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from services.escalation.calendar import (
    BusinessCalendar,
    CalendarError,
    CalendarFile,
    UncoveredYearError,
    load_calendar,
    missing_years,
)

CALENDAR = Path(__file__).resolve().parents[2] / "deploy" / "config" / "calendar.yaml"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def span(first: date, last: date) -> set[date]:
    return {first + timedelta(days=i) for i in range((last - first).days + 1)}


# The notices, transcribed by hand (not read from calendar.yaml).
HOLIDAYS_2025 = {
    date(2025, 1, 1),  # 元旦
    *span(date(2025, 1, 28), date(2025, 2, 4)),  # 春节
    *span(date(2025, 4, 4), date(2025, 4, 6)),  # 清明节
    *span(date(2025, 5, 1), date(2025, 5, 5)),  # 劳动节
    *span(date(2025, 5, 31), date(2025, 6, 2)),  # 端午节
    *span(date(2025, 10, 1), date(2025, 10, 8)),  # 国庆节、中秋节
}
MAKE_UP_2025 = {
    date(2025, 1, 26): "Sunday",
    date(2025, 2, 8): "Saturday",
    date(2025, 4, 27): "Sunday",
    date(2025, 9, 28): "Sunday",
    date(2025, 10, 11): "Saturday",
}
HOLIDAYS_2026 = {
    *span(date(2026, 1, 1), date(2026, 1, 3)),  # 元旦
    *span(date(2026, 2, 15), date(2026, 2, 23)),  # 春节
    *span(date(2026, 4, 4), date(2026, 4, 6)),  # 清明节
    *span(date(2026, 5, 1), date(2026, 5, 5)),  # 劳动节
    *span(date(2026, 6, 19), date(2026, 6, 21)),  # 端午节
    *span(date(2026, 9, 25), date(2026, 9, 27)),  # 中秋节
    *span(date(2026, 10, 1), date(2026, 10, 7)),  # 国庆节
}
MAKE_UP_2026 = {
    date(2026, 1, 4): "Sunday",
    date(2026, 2, 14): "Saturday",
    date(2026, 2, 28): "Saturday",
    date(2026, 5, 9): "Saturday",
    date(2026, 9, 20): "Sunday",
    date(2026, 10, 10): "Saturday",
}


@pytest.fixture(scope="module")
def cal() -> BusinessCalendar:
    return load_calendar(CALENDAR, "Asia/Shanghai")


# ---------------------------------------------------------------- the shipped data


def test_the_shipped_calendar_covers_2025_and_2026(cal: BusinessCalendar) -> None:
    assert cal.years == [2025, 2026]
    assert cal.zone == SHANGHAI
    assert cal.working_day_length == timedelta(hours=6, minutes=30)
    assert cal.version.startswith("2026.11-1+")


def test_the_transcription_matches_the_notices_counts_and_weekdays() -> None:
    # 2025: 1 + 8 + 3 + 5 + 3 + 8 days off; 2026: 3 + 9 + 3 + 5 + 3 + 3 + 7.
    assert (len(HOLIDAYS_2025), len(MAKE_UP_2025)) == (28, 5)
    assert (len(HOLIDAYS_2026), len(MAKE_UP_2026)) == (33, 6)
    # The notices name each make-up day's weekday (周六, 周日); the dates must agree.
    for day, weekday in {**MAKE_UP_2025, **MAKE_UP_2026}.items():
        assert day.strftime("%A") == weekday, day


def test_every_day_of_2025_and_2026_is_what_the_notices_say(cal: BusinessCalendar) -> None:
    holidays = HOLIDAYS_2025 | HOLIDAYS_2026
    make_up = MAKE_UP_2025.keys() | MAKE_UP_2026.keys()
    wrong = []
    for day in span(date(2025, 1, 1), date(2026, 12, 31)):
        expected = day in make_up or (day.weekday() < 5 and day not in holidays)
        if cal.is_working_day(day) != expected:
            wrong.append(day)
    assert wrong == []


def test_each_year_names_its_notice_and_holidays() -> None:
    spec = CalendarFile.model_validate(yaml.safe_load(CALENDAR.read_text(encoding="utf-8")))
    by_year = {y.year: y for y in spec.years}
    assert by_year[2025].notice == "国办发明电〔2024〕12号"
    assert by_year[2025].issued == date(2024, 11, 12)
    assert by_year[2026].issued == date(2025, 11, 4)
    assert [h.name for h in by_year[2025].holidays] == [
        "元旦",
        "春节",
        "清明节",
        "劳动节",
        "端午节",
        "国庆节、中秋节",
    ]
    assert [h.name for h in by_year[2026].holidays] == [
        "元旦",
        "春节",
        "清明节",
        "劳动节",
        "端午节",
        "中秋节",
        "国庆节",
    ]
    for schedule in spec.years:
        assert f"{schedule.year}年部分节假日安排" in schedule.title
        assert schedule.source.startswith("https://")


# ---------------------------------------------------------------- 2026 Spring Festival


def test_a_general_tip_on_the_eve_of_the_2026_spring_festival(cal: BusinessCalendar) -> None:
    start = local(2026, 2, 13, 10, 0)  # Friday
    # One working day: Saturday 14 February is a make-up working day.
    assert cal.add_working_days(start, 1) == local(2026, 2, 14, 10, 0)
    # Seven: Sat 14 (1), holiday 15-23, Tue 24 (2), 25 (3), 26 (4), Fri 27 (5),
    # Sat 28 make-up (6), Sun 1 March off, Mon 2 March (7).
    assert cal.add_working_days(start, 7) == local(2026, 3, 2, 10, 0)


def test_a_clock_started_on_the_make_up_saturday_counts_from_that_saturday(
    cal: BusinessCalendar,
) -> None:
    assert cal.is_working_day(date(2026, 2, 14))
    # Started at 09:00 on it (not from Monday): the next working day is Tue 24 February.
    assert cal.add_working_days(local(2026, 2, 14, 9, 0), 1) == local(2026, 2, 24, 9, 0)


def test_a_clock_started_during_the_holiday_counts_from_the_first_day_back(
    cal: BusinessCalendar,
) -> None:
    start = local(2026, 2, 18, 10, 0)  # Wednesday, 初二
    assert cal.next_working_time(start) == local(2026, 2, 24, 8, 30)
    assert cal.add_working_days(start, 1) == local(2026, 2, 25, 8, 30)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 2, 13), True),  # Friday
        (date(2026, 2, 14), True),  # Saturday, make-up
        (date(2026, 2, 15), False),  # Sunday, holiday
        (date(2026, 2, 16), False),  # Monday, holiday
        (date(2026, 2, 23), False),  # Monday, last day of the holiday
        (date(2026, 2, 24), True),  # Tuesday
        (date(2026, 2, 28), True),  # Saturday, make-up
        (date(2026, 3, 1), False),  # Sunday
    ],
)
def test_spring_festival_2026_days(cal: BusinessCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_working_time_runs_through_the_make_up_saturday(cal: BusinessCalendar) -> None:
    # Two hours from Friday 16:30: one hour to 17:30, one more on Saturday from 08:30.
    start = local(2026, 2, 13, 16, 30)
    assert cal.add_working_time(start, timedelta(hours=2)) == local(2026, 2, 14, 9, 30)


# ---------------------------------------------------------------- 2026 National Day


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        # Fri 18 Sep → Sun 20 Sep, a make-up working day.
        (local(2026, 9, 18, 10, 0), 1, local(2026, 9, 20, 10, 0)),
        # Wed 30 Sep → Thu 8 Oct, over the seven days of 国庆节.
        (local(2026, 9, 30, 10, 0), 1, local(2026, 10, 8, 10, 0)),
        # Fri 9 Oct → Sat 10 Oct, a make-up working day.
        (local(2026, 10, 9, 10, 0), 1, local(2026, 10, 10, 10, 0)),
        # Thu 24 Sep: 中秋节 25-27, Mon 28 (1), 29 (2), 30 (3), 国庆节 1-7, Thu 8 (4), Fri 9 (5),
        # Sat 10 make-up (6), Sun 11 off, Mon 12 (7).
        (local(2026, 9, 24, 10, 0), 7, local(2026, 10, 12, 10, 0)),
        # Fri 18 Sep: Sun 20 (1), Mon 21-Thu 24 (2-5), Mon 28-Wed 30 (6-8), Thu 8 Oct (9),
        # Fri 9 (10), Sat 10 (11), Mon 12-Thu 15 (12-15). Weekdays alone would say Fri 9 Oct.
        (local(2026, 9, 18, 10, 0), 15, local(2026, 10, 15, 10, 0)),
    ],
)
def test_national_day_2026(cal: BusinessCalendar, start: datetime, n: int, due: datetime) -> None:
    assert cal.add_working_days(start, n) == due


# ---------------------------------------------------------------- 2025


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        # Tue 30 Sep → Thu 9 Oct, over the eight days of 国庆节、中秋节.
        (local(2025, 9, 30, 10, 0), 1, local(2025, 10, 9, 10, 0)),
        # Fri 26 Sep → Sun 28 Sep, a make-up working day.
        (local(2025, 9, 26, 16, 0), 1, local(2025, 9, 28, 16, 0)),
        # Fri 26 Sep: Sun 28 (1), Mon 29 (2), Tue 30 (3), holiday 1-8, Thu 9 (4), Fri 10 (5),
        # Sat 11 make-up (6), Sun 12 off, Mon 13 (7).
        (local(2025, 9, 26, 16, 0), 7, local(2025, 10, 13, 16, 0)),
        # ... then Tue 14-Fri 17 (8-11), Mon 20-Thu 23 (12-15).
        (local(2025, 9, 26, 16, 0), 15, local(2025, 10, 23, 16, 0)),
        # Mon 20 Jan: Tue 21-Fri 24 (1-4), Sun 26 make-up (5), Mon 27 (6), 春节 28 Jan-4 Feb,
        # Wed 5-Fri 7 (7-9), Sat 8 make-up (10), Mon 10-Fri 14 (11-15).
        (local(2025, 1, 20, 9, 0), 15, local(2025, 2, 14, 9, 0)),
        # Across the new year: Thu 25, Fri 26, Mon 29-Wed 31 Dec (1-5), 元旦 1-3 Jan 2026,
        # Sun 4 Jan make-up (6), Mon 5 Jan (7).
        (local(2025, 12, 24, 10, 0), 7, local(2026, 1, 5, 10, 0)),
    ],
)
def test_2025_holidays(cal: BusinessCalendar, start: datetime, n: int, due: datetime) -> None:
    assert cal.add_working_days(start, n) == due


# ---------------------------------------------------------------- the 23:59 → 00:00 edge


@pytest.mark.parametrize(
    "start",
    [
        local(2026, 9, 30, 23, 59),  # the eve of 国庆节, local
        utc(2026, 9, 30, 15, 59),  # the same instant in UTC
        utc(2026, 9, 30, 16, 0),  # 00:00 on 1 Oct locally, still 30 Sep in UTC
        local(2026, 10, 7, 23, 59),  # the last night of the holiday
        local(2026, 10, 8, 0, 0),  # the first day back, before work begins
    ],
)
def test_around_midnight_on_the_edges_of_a_holiday(cal: BusinessCalendar, start: datetime) -> None:
    # Outside working hours: the clock counts from 08:30 on Thu 8 Oct; one day is Fri 9 Oct.
    assert cal.next_working_time(start) == local(2026, 10, 8, 8, 30)
    assert cal.add_working_days(start, 1) == local(2026, 10, 9, 8, 30)


def test_the_last_working_minute_before_a_holiday_still_counts(cal: BusinessCalendar) -> None:
    start = utc(2026, 9, 30, 9, 29)  # 17:29 local on the eve
    assert cal.add_working_days(start, 1) == local(2026, 10, 8, 17, 29)


# ---------------------------------------------------------------- working time


@pytest.mark.parametrize(
    ("start", "amount", "due"),
    [
        # A whole day's working time from 08:30 ends at 17:30 and falls due when work resumes,
        # agreeing with one working day.
        (local(2026, 11, 23, 8, 30), timedelta(hours=6, minutes=30), local(2026, 11, 24, 8, 30)),
        # Running out at noon falls due at 14:30.
        (local(2026, 11, 20, 11, 0), timedelta(hours=1), local(2026, 11, 20, 14, 30)),
        (local(2026, 11, 20, 11, 0), timedelta(hours=1, minutes=30), local(2026, 11, 20, 15, 0)),
        # From Friday evening: Monday's working hours.
        (local(2026, 11, 20, 19, 0), timedelta(hours=4), local(2026, 11, 23, 15, 0)),
        (local(2026, 11, 20, 10, 0), timedelta(0), local(2026, 11, 20, 10, 0)),
    ],
)
def test_add_working_time(
    cal: BusinessCalendar, start: datetime, amount: timedelta, due: datetime
) -> None:
    assert cal.add_working_time(start, amount) == due


def test_answers_keep_the_starts_time_zone(cal: BusinessCalendar) -> None:
    due = cal.add_working_days(utc(2026, 2, 13, 2, 0), 1)
    assert due == utc(2026, 2, 14, 2, 0)
    assert due.utcoffset() == timedelta(0)


def test_a_naive_start_is_refused(cal: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="no time zone"):
        cal.add_working_days(datetime(2026, 2, 13, 10, 0), 1)


# ---------------------------------------------------------------- years it does not cover


def test_a_day_of_an_uncovered_year_raises_naming_the_year(cal: BusinessCalendar) -> None:
    with pytest.raises(UncoveredYearError, match="no holiday notice for 2027") as info:
        cal.is_working_day(date(2027, 1, 4))
    assert info.value.year == 2027
    with pytest.raises(UncoveredYearError, match="2024"):
        cal.is_working_day(date(2024, 12, 31))


def test_a_deadline_reaching_into_an_uncovered_year_raises(cal: BusinessCalendar) -> None:
    # Thu 24 Dec 2026: Fri 25, Mon 28-Thu 31 are five working days; the sixth is in 2027.
    with pytest.raises(UncoveredYearError, match="2027"):
        cal.add_working_days(local(2026, 12, 24, 10, 0), 7)
    with pytest.raises(UncoveredYearError, match="2027"):
        cal.next_working_time(local(2026, 12, 31, 18, 0))
    with pytest.raises(UncoveredYearError, match="2024"):
        cal.add_working_days(local(2024, 12, 31, 10, 0), 1)


def test_a_deadline_ending_on_the_last_covered_day_needs_no_more(cal: BusinessCalendar) -> None:
    # Thu 10 Dec 2026: Fri 11 (1), Mon 14-Fri 18 (2-6), Mon 21-Fri 25 (7-11), Mon 28-Thu 31
    # (12-15).
    assert cal.add_working_days(local(2026, 12, 10, 10, 0), 15) == local(2026, 12, 31, 10, 0)


# ---------------------------------------------------------------- refused at load


def minimal() -> dict[str, Any]:
    return {
        "version": "test",
        "timezone": "Asia/Shanghai",
        "working_hours": [
            {"start": "08:30", "end": "12:00"},
            {"start": "14:30", "end": "17:30"},
        ],
        "years": [
            {
                "year": 2026,
                "notice": "国办发明电〔2025〕7号",
                "title": "国务院办公厅关于2026年部分节假日安排的通知",
                "issued": date(2025, 11, 4),
                "source": "https://example.org/2026",
                "holidays": [
                    {
                        "name": "春节",
                        "first": date(2026, 2, 15),
                        "last": date(2026, 2, 23),
                        "make_up_working_days": [date(2026, 2, 14), date(2026, 2, 28)],
                    }
                ],
            }
        ],
    }


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "calendar.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def refusal(path: Path, timezone: str = "Asia/Shanghai") -> str:
    with pytest.raises(CalendarError) as info:
        load_calendar(path, timezone)
    return "\n".join(info.value.reasons)


def test_a_minimal_calendar_loads(tmp_path: Path) -> None:
    cal = load_calendar(write(tmp_path, minimal()), "Asia/Shanghai")
    assert cal.years == [2026]
    assert cal.is_working_day(date(2026, 2, 14))
    assert not cal.is_working_day(date(2026, 2, 16))


def test_a_make_up_day_inside_a_holiday_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"][0]["make_up_working_days"] = [date(2026, 2, 15)]
    reasons = refusal(write(tmp_path, doc))
    assert (
        "2026-02-15 is listed twice: a holiday of 春节 and a make-up working day of 春节" in reasons
    )


def test_a_make_up_day_that_is_already_a_weekday_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"][0]["make_up_working_days"] = [date(2026, 2, 13)]
    reasons = refusal(write(tmp_path, doc))
    assert "make-up working day 2026-02-13 is a Friday, already a working day" in reasons


def test_overlapping_holidays_are_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"].append(
        {"name": "元宵节", "first": date(2026, 2, 23), "last": date(2026, 2, 24)}
    )
    assert "2026-02-23 is listed twice" in refusal(write(tmp_path, doc))


def test_a_date_outside_the_notices_year_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"][0]["make_up_working_days"] = [date(2027, 1, 9)]
    assert "2027-01-09 lies outside the 2026 notice's year" in refusal(write(tmp_path, doc))


def test_a_new_years_holiday_may_begin_in_december(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"].append(
        {
            **doc["years"][0],
            "year": 2027,
            "holidays": [{"name": "元旦", "first": date(2026, 12, 31), "last": date(2027, 1, 1)}],
        }
    )
    cal = load_calendar(write(tmp_path, doc), "Asia/Shanghai")
    assert not cal.is_working_day(date(2026, 12, 31))  # a Thursday, off under the 2027 notice


@pytest.mark.parametrize(
    ("years", "reason"),
    [
        ([2025, 2027], "years: [2026] missing between 2025 and 2027"),
        ([2026, 2026], "a year is listed twice"),
    ],
)
def test_the_years_claimed_must_each_be_there_once(
    tmp_path: Path, years: list[int], reason: str
) -> None:
    doc = minimal()
    template = doc["years"][0]
    doc["years"] = [
        {
            **template,
            "year": year,
            "holidays": [{"name": "元旦", "first": date(year, 1, 1), "last": date(year, 1, 1)}],
        }
        for year in years
    ]
    assert reason in refusal(write(tmp_path, doc))


def test_a_year_without_holidays_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"] = []
    assert "years.0.holidays: List should have at least 1 item" in refusal(write(tmp_path, doc))


def test_a_holiday_ending_before_it_begins_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"][0]["last"] = date(2026, 2, 1)
    assert "first day 2026-02-15 is after its last day 2026-02-01" in refusal(write(tmp_path, doc))


def test_an_unquoted_time_is_refused_not_read_as_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    text = path.read_text(encoding="utf-8")
    assert "'14:30'" in text
    path.write_text(text.replace("'14:30'", "14:30"), encoding="utf-8")  # YAML reads 870
    assert 'give times as quoted "HH:MM" text, not 870' in refusal(path)


@pytest.mark.parametrize(
    ("hours", "reason"),
    [
        ([("08:30", "12:00"), ("11:00", "17:30")], "11:00-17:30 begins before"),
        ([("12:00", "08:30")], "12:00-08:30 is empty"),
        ([("08:30+08:00", "12:00")], "not '08:30+08:00'"),
    ],
)
def test_bad_working_hours_are_refused(
    tmp_path: Path, hours: list[tuple[str, str]], reason: str
) -> None:
    doc = minimal()
    doc["working_hours"] = [{"start": start, "end": end} for start, end in hours]
    assert reason in refusal(write(tmp_path, doc))


def test_a_time_zone_other_than_the_services_is_refused(tmp_path: Path) -> None:
    reasons = refusal(write(tmp_path, minimal()), timezone="Asia/Urumqi")
    assert "Asia/Shanghai differs from WHISTLE_TIMEZONE (Asia/Urumqi)" in reasons


def test_an_unknown_time_zone_is_refused(tmp_path: Path) -> None:
    doc = minimal()
    doc["timezone"] = "Asia/Qingxi"
    assert "unknown time zone 'Asia/Qingxi'" in refusal(write(tmp_path, doc), "Asia/Qingxi")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    doc = minimal()
    doc["years"][0]["holidays"][0]["make_up_working_days"] = [date(2026, 2, 13), date(2026, 2, 15)]
    with pytest.raises(CalendarError) as info:
        load_calendar(write(tmp_path, doc), "Asia/Shanghai")
    assert len(info.value.reasons) == 2
    assert all(
        reason.startswith(f"{tmp_path / 'calendar.yaml'}: ") for reason in info.value.reasons
    )


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    assert "cannot read" in refusal(tmp_path / "calendar.yaml")


def test_the_years_missing_are_named_from_the_county_s_own_new_year(
    cal: BusinessCalendar,
) -> None:
    """Shanghai is already in 2027 at 16:00 UTC on New Year's Eve: 2027 is missing from then,
    and the service keeps running (missing_years names it; nothing raises)."""
    assert missing_years(cal, datetime(2026, 12, 31, 15, 59, tzinfo=UTC)) == []
    assert missing_years(cal, datetime(2026, 12, 31, 16, 0, tzinfo=UTC)) == [2027]
    # Two New Years without an update: both years are named, oldest first.
    assert missing_years(cal, local(2028, 3, 1, 9, 0)) == [2027, 2028]
    assert missing_years(cal, local(2025, 6, 1, 9, 0)) == []


def test_a_missing_current_year_is_counted_monday_to_friday_provisionally(
    cal: BusinessCalendar,
) -> None:
    """What escalation does on 4 January 2027 with a calendar of 2025-2026: the plain calendar
    refuses the day; its provisional copy counts it as a Monday."""
    monday = local(2027, 1, 4, 9, 0)
    with pytest.raises(UncoveredYearError, match="2027"):
        cal.add_working_days(monday, 1)
    assert cal.provisional().add_working_days(monday, 1) == local(2027, 1, 5, 9, 0)


def test_whistle_up_starts_in_a_year_the_calendar_lacks_and_says_so(tmp_path: Path) -> None:
    """``whistle up``'s configuration check on 4 January 2027 with the shipped 2025-2026
    calendar: it passes (intake and the rest start) with a warning naming 2027."""
    from services.launcher.stack import check_configuration
    from services.runtime.settings import Settings

    said: list[str] = []
    settings = Settings(config_dir=CALENDAR.parent, home=tmp_path)
    assert check_configuration(settings, local(2026, 12, 31, 17, 0), said.append)
    assert said == []
    assert check_configuration(settings, local(2027, 1, 4, 9, 0), said.append)
    (warning,) = said
    assert "WARNING" in warning and "2027" in warning and "Monday to Friday" in warning


def test_whistle_up_still_refuses_an_invalid_calendar(tmp_path: Path) -> None:
    from services.launcher.stack import check_configuration
    from services.runtime.settings import Settings

    config = tmp_path / "config"
    shutil.copytree(CALENDAR.parent, config)
    (config / "calendar.yaml").write_text("version: [", encoding="utf-8")
    said: list[str] = []
    settings = Settings(config_dir=config, home=tmp_path)
    assert not check_configuration(settings, local(2026, 6, 1, 9, 0), said.append)
    assert "nothing started" in said[0] and "not valid YAML" in said[1]
