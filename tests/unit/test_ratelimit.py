"""The rate-limit rule (services/intake/gcra.py): explicit time, no clock, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.intake.gcra import ZERO, Verdict, gcra

HOUR = timedelta(hours=1)
TEN = datetime(2026, 11, 21, 10, tzinfo=UTC)


def _run(
    times: list[datetime], limit: int, period: timedelta, tat: datetime | None = None
) -> tuple[list[Verdict], datetime | None]:
    """Each request in turn against the state the ones before it left."""
    verdicts = []
    for now in times:
        verdict = gcra(now, limit, period, tat)
        verdicts.append(verdict)
        tat = verdict.tat
    return verdicts, tat


def test_a_new_key_may_send_its_whole_allowance_at_once_and_no_more() -> None:
    verdicts, tat = _run([TEN] * 4, 3, HOUR)
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert tat == TEN + HOUR  # the allowance is whole again an hour later


def test_a_refusal_says_the_real_time_until_the_next_allowed_request() -> None:
    verdicts, tat = _run([TEN] * 3 + [TEN + timedelta(minutes=5, seconds=30)], 3, HOUR)
    refused = verdicts[-1]
    # One request of three comes back every 20 minutes; 5.5 of them have passed.
    assert refused == Verdict(False, timedelta(minutes=14, seconds=30), TEN + HOUR)
    assert refused.retry_after_seconds == 870
    assert gcra(TEN + timedelta(minutes=20), 3, HOUR, tat).allowed
    assert not gcra(TEN + timedelta(minutes=20) - timedelta(microseconds=1), 3, HOUR, tat).allowed


def test_a_refused_request_does_not_count() -> None:
    _, tat = _run([TEN] * 3, 3, HOUR)
    verdicts, after = _run([TEN + timedelta(minutes=m) for m in range(1, 20)], 3, HOUR, tat)
    assert not any(v.allowed for v in verdicts) and after == tat
    assert gcra(TEN + timedelta(minutes=20), 3, HOUR, after).allowed


def test_no_twice_the_limit_across_the_hour() -> None:
    """Fixed hourly windows let 3 through just before 11:00 and 3 more just after."""
    before = datetime(2026, 11, 21, 10, 59, 59, tzinfo=UTC)
    after = datetime(2026, 11, 21, 11, 0, 1, tzinfo=UTC)
    verdicts, _ = _run([before] * 3 + [after] * 3, 3, HOUR)
    assert [v.allowed for v in verdicts] == [True, True, True, False, False, False]
    assert verdicts[3].retry_after == timedelta(minutes=20) - timedelta(seconds=2)


def test_a_steady_client_gets_the_rate_and_no_more() -> None:
    # One request a minute against 3 an hour: after the first three, one every 20 minutes.
    verdicts, _ = _run([TEN + timedelta(minutes=m) for m in range(120)], 3, HOUR)
    allowed = [m for m, v in enumerate(verdicts) if v.allowed]
    assert allowed == [0, 1, 2, 20, 40, 60, 80, 100]


def test_a_key_idle_for_longer_than_the_period_starts_afresh() -> None:
    old = TEN - timedelta(days=3)
    verdicts, tat = _run([TEN] * 3, 3, HOUR, tat=old)
    assert all(v.allowed for v in verdicts) and tat == TEN + HOUR


def test_an_allowed_request_needs_no_wait() -> None:
    verdict = gcra(TEN, 10, timedelta(days=1), None)
    assert verdict == Verdict(True, ZERO, TEN + timedelta(hours=2, minutes=24))
    assert verdict.retry_after_seconds == 0


def test_a_wait_under_a_second_is_still_a_second() -> None:
    _, tat = _run([TEN] * 3, 3, HOUR)
    almost = TEN + timedelta(minutes=20) - timedelta(milliseconds=200)
    assert gcra(almost, 3, HOUR, tat).retry_after_seconds == 1


@pytest.mark.parametrize(("limit", "period"), [(0, HOUR), (3, ZERO), (-1, HOUR)])
def test_a_limit_must_be_positive(limit: int, period: timedelta) -> None:
    with pytest.raises(ValueError):
        gcra(TEN, limit, period, None)
