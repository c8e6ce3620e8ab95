"""The county's business calendar (``deploy/config/calendar.yaml``) and working-time arithmetic.

The rules every deadline follows:

- A **working day** is Monday to Friday, except the holidays of the State Council's notice for
  its year, plus that notice's make-up working days (调休上班), whatever their weekday.
- **Working time** is the working hours of working days, in the county's time zone. Each period
  is half-open: with 08:30-12:00, 08:30 is working time and 12:00 is not.
- A clock **counts from the next working time** at or after its start: a start inside working
  hours counts at once; one in the evening, the lunch break, a weekend or a holiday counts from
  the beginning of the next working period.
- **N working days** from a start fall due at the same local time on the N-th working day after
  the day the clock starts counting. Every working day has the same hours, so this is exactly N
  days' worth of working time.
- An **amount of working time** from a start falls due when that much working time has passed.
  If it runs out exactly at the end of a period it falls due when work resumes, so that one day's
  worth of working time and one working day fall due at the same instant.
- A day in a year whose notice is not in the file raises ``UncoveredYearError``: a weekends-only
  guess would put deadlines on holidays and miss make-up Saturdays. The callers count such a
  deadline on :meth:`BusinessCalendar.provisional` instead and flag it; it is counted again
  once the year is added (``services/escalation/recompute.py``).
- A county whose *current* year is missing (the notice not yet entered on 1 January) is not
  stopped: :func:`missing_years` names the years, and escalation warns loudly while it counts
  them provisionally (``services/escalation/calendar_watch.py``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _clock_time(value: object) -> object:
    # YAML reads an unquoted 14:30 as the base-60 integer 870, which pydantic would then take
    # as 00:14:30 UTC; and a time with an offset would not compare with the others. Insist on
    # quoted "HH:MM" text: the time zone is the calendar's.
    if not isinstance(value, str) or not re.fullmatch(r"[0-2][0-9]:[0-5][0-9]", value):
        raise ValueError(f'give times as quoted "HH:MM" text, not {value!r}')
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkingPeriod(_Strict):
    start: ClockTime
    end: ClockTime


class HolidayPeriod(_Strict):
    """One holiday of a notice: its days off and the weekend days worked to make up for them."""

    name: str = Field(min_length=1)
    first: date
    last: date
    make_up_working_days: list[date] = []

    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]


class YearSchedule(_Strict):
    """The State Council's notice for one year."""

    year: int
    notice: str = Field(min_length=1)  # 文号
    title: str = Field(min_length=1)
    issued: date
    source: str = Field(min_length=1)  # where the dates were checked
    holidays: list[HolidayPeriod] = Field(min_length=1)


class CalendarFile(_Strict):
    version: str = Field(min_length=1)
    timezone: str
    working_hours: list[WorkingPeriod] = Field(min_length=1)
    years: list[YearSchedule] = Field(min_length=1)


class CalendarError(Exception):
    """The calendar file is invalid; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class UncoveredYearError(LookupError):
    """A deadline needs a day of a year the calendar has no State Council notice for."""

    def __init__(self, year: int, covered: list[int]) -> None:
        super().__init__(
            f"the business calendar has no holiday notice for {year} (it covers "
            f"{', '.join(map(str, covered))}); add the State Council's {year} notice to "
            "calendar.yaml"
        )
        self.year = year


class BusinessCalendar:
    """One validated calendar. Pure: no clock, no I/O; every answer follows from its inputs."""

    def __init__(self, spec: CalendarFile, version: str, *, assume_weekdays: bool = False) -> None:
        self._spec = spec
        self.assume_weekdays = assume_weekdays
        self.version = version
        self.zone = ZoneInfo(spec.timezone)
        self.years = sorted(y.year for y in spec.years)
        self._hours = [(p.start, p.end) for p in spec.working_hours]
        self._holidays = {d for y in spec.years for h in y.holidays for d in h.days()}
        self._make_up = {d for y in spec.years for h in y.holidays for d in h.make_up_working_days}
        self.working_day_length = sum(
            (_length(start, end) for start, end in self._hours), timedelta()
        )

    def provisional(self) -> BusinessCalendar:
        """This calendar, but counting Monday to Friday in years it has no notice for.

        For deadlines that reach past the covered years: computed, used and flagged as
        provisional, rather than lost or blocking every case behind them.
        """
        return BusinessCalendar(self._spec, self.version, assume_weekdays=True)

    def is_working_day(self, day: date) -> bool:
        if day.year not in self.years:
            if self.assume_weekdays:
                return day.weekday() < 5
            raise UncoveredYearError(day.year, self.years)
        if day in self._make_up:
            return True
        return day.weekday() < 5 and day not in self._holidays

    def next_working_time(self, at: datetime) -> datetime:
        """The first instant of working time at or after ``at``, in the county's time zone."""
        local = _aware(at).astimezone(self.zone)
        day = local.date()
        while True:
            if self.is_working_day(day):
                for start, end in self._periods(day):
                    if local < end:
                        return max(local, start)
            day += timedelta(days=1)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """When ``n`` working days from ``start`` fall due, in ``start``'s time zone."""
        if n < 0:
            raise ValueError("a number of working days cannot be negative")
        begin = self.next_working_time(start)
        day = begin.date()
        for _ in range(n):
            day += timedelta(days=1)
            while not self.is_working_day(day):
                day += timedelta(days=1)
        return datetime.combine(day, begin.time(), self.zone).astimezone(start.tzinfo)

    def add_working_time(self, start: datetime, amount: timedelta) -> datetime:
        """When ``amount`` of working time from ``start`` has passed, in ``start``'s time zone."""
        if amount < timedelta(0):
            raise ValueError("an amount of working time cannot be negative")
        at = self.next_working_time(start)
        remaining = amount
        while True:
            end = self._end_of_period(at)
            # Subtract in UTC: aware datetimes sharing a tzinfo subtract as wall-clock times.
            available = end.astimezone(UTC) - at.astimezone(UTC)
            if remaining < available:
                return (at.astimezone(UTC) + remaining).astimezone(start.tzinfo)
            remaining -= available
            at = self.next_working_time(end)

    def _periods(self, day: date) -> list[tuple[datetime, datetime]]:
        return [
            (datetime.combine(day, start, self.zone), datetime.combine(day, end, self.zone))
            for start, end in self._hours
        ]

    def _end_of_period(self, at: datetime) -> datetime:
        """The end of the working period ``at`` lies in (``at`` is working time)."""
        return next(end for start, end in self._periods(at.date()) if start <= at < end)


def _aware(at: datetime) -> datetime:
    # A naive time would be read in the machine's zone, which says nothing about the county.
    if at.tzinfo is None:
        raise ValueError(f"{at.isoformat()} has no time zone")
    return at


def _length(start: time, end: time) -> timedelta:
    return datetime.combine(date.min, end) - datetime.combine(date.min, start)


def load_calendar(path: Path, timezone: str) -> BusinessCalendar:
    """Read and check the calendar file; ``timezone`` is WHISTLE_TIMEZONE, which it must match.

    CalendarError lists every problem at once, so an operator fixes the file in one pass.
    """
    return parse_calendar(read_calendar(path), path, timezone)


def read_calendar(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CalendarError([f"{path}: cannot read ({exc.strerror})"]) from exc


def parse_calendar(text: bytes, path: Path, timezone: str) -> BusinessCalendar:
    """The calendar in ``text`` (the bytes of ``path``, named in the reasons), checked."""
    try:
        spec = CalendarFile.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise CalendarError([f"{path}: not valid YAML ({exc})"]) from exc
    except ValidationError as exc:
        raise CalendarError(
            [f"{path}: {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        ) from exc
    reasons = [f"{path}: {reason}" for reason in _check(spec, timezone)]
    if reasons:
        raise CalendarError(reasons)
    return BusinessCalendar(spec, f"{spec.version}+{digest(text)[:12]}")


def digest(text: bytes) -> str:
    """The file's fingerprint: part of the calendar's version, and what a reload compares."""
    return hashlib.sha256(text).hexdigest()


def missing_years(calendar: BusinessCalendar, now: datetime) -> list[int]:
    """The years up to the county's current one that the calendar lacks, oldest first; empty
    when it covers the current year.

    Not a refusal: on 1 January a county whose notice was not entered in time keeps working,
    its deadlines counted Monday to Friday and flagged provisional until the year is added.
    A later year (whose notice the State Council publishes in November or December) is not
    missing yet; deadlines reaching into it are flagged one by one.
    """
    year = now.astimezone(calendar.zone).year
    if year in calendar.years:
        return []
    if year < calendar.years[0]:
        return [year]
    return list(range(calendar.years[-1] + 1, year + 1))


def _check(spec: CalendarFile, timezone: str) -> list[str]:
    """What the file's shape alone cannot say: consistency within and across notices."""
    reasons = []
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        reasons.append(f"timezone: unknown time zone {spec.timezone!r}")
    if spec.timezone != timezone:
        reasons.append(
            f"timezone: {spec.timezone} differs from WHISTLE_TIMEZONE ({timezone}); "
            "a county's deadlines and its tracking numbers must use the same time zone"
        )
    previous_end: time | None = None
    for period in spec.working_hours:
        if period.start >= period.end:
            reasons.append(f"working_hours: {period.start:%H:%M}-{period.end:%H:%M} is empty")
        elif previous_end is not None and period.start < previous_end:
            reasons.append(
                f"working_hours: {period.start:%H:%M}-{period.end:%H:%M} begins before the "
                "previous period ends; list the periods in order, without overlap"
            )
        previous_end = period.end

    years = [y.year for y in spec.years]
    if len(set(years)) != len(years):
        reasons.append(f"years: a year is listed twice ({years})")
    if missing := sorted(set(range(min(years), max(years) + 1)) - set(years)):
        # A gap would leave a year between two covered ones unanswerable; say so now.
        reasons.append(f"years: {missing} missing between {min(years)} and {max(years)}")

    listed: dict[date, str] = {}

    def claim(day: date, what: str, schedule: YearSchedule) -> None:
        # A notice's dates are its year's, except that 元旦 may begin on 30 or 31 December.
        if day.year != schedule.year and not (day.year == schedule.year - 1 and day.month == 12):
            reasons.append(f"{what} {day} lies outside the {schedule.year} notice's year")
        if day in listed:
            reasons.append(f"{day} is listed twice: {listed[day]} and {what}")
        listed.setdefault(day, what)

    for schedule in spec.years:
        for holiday in schedule.holidays:
            if holiday.first > holiday.last:
                reasons.append(
                    f"{schedule.year} {holiday.name}: first day {holiday.first} is after "
                    f"its last day {holiday.last}"
                )
            for day in holiday.days():
                claim(day, f"a holiday of {holiday.name}", schedule)
            for day in holiday.make_up_working_days:
                claim(day, f"a make-up working day of {holiday.name}", schedule)
                if day.weekday() < 5:
                    reasons.append(
                        f"{schedule.year} {holiday.name}: make-up working day {day} is a "
                        f"{_WEEKDAYS[day.weekday()]}, already a working day"
                    )
    return reasons
