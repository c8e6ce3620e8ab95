from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.intake.ratelimit import Decision, Limit, decide, window_of

HOUR = timedelta(hours=1)


def test_windows_are_aligned_to_the_hour_whatever_the_request_time() -> None:
    start, end = window_of(datetime(2026, 11, 21, 10, 37, 12, tzinfo=UTC), HOUR)
    assert (start, end) == (
        datetime(2026, 11, 21, 10, tzinfo=UTC),
        datetime(2026, 11, 21, 11, tzinfo=UTC),
    )


def test_up_to_the_limit_is_allowed_and_beyond_it_says_when_to_come_back() -> None:
    limit = Limit("tips/address", 3, HOUR)
    now = datetime(2026, 11, 21, 10, 59, 30, tzinfo=UTC)
    assert decide(3, limit, now) == Decision(True, 0)
    assert decide(4, limit, now) == Decision(False, 30)
