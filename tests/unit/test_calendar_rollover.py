"""The pure parts of calendar rollover (issue #15, item 7): what is said while the current year
is missing, and how each kind of clock is counted again once it is added.

The 2027 year here is TEST DATA, made up for these tests (not the State Council's notice):
Tuesday 5 and Wednesday 6 January 2027 off.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.escalation.calendar import BusinessCalendar, load_calendar
from services.escalation.calendar_watch import CalendarStatus
from services.escalation.deadlines import ComputedDeadline
from services.escalation.policies import DeadlinePolicy, load_policies
from services.escalation.recompute import recount
from tests.unit.test_calendar import CALENDAR, local

MONDAY = local(2027, 1, 4, 9, 0)


@pytest.fixture(scope="module")
def shipped() -> BusinessCalendar:
    return load_calendar(CALENDAR, "Asia/Shanghai")


@pytest.fixture(scope="module")
def with_2027(tmp_path_factory: pytest.TempPathFactory) -> BusinessCalendar:
    doc = yaml.safe_load(CALENDAR.read_text(encoding="utf-8"))
    doc["years"].append(
        {
            "year": 2027,
            "notice": "测试数据（虚构）",
            "title": "TEST DATA",
            "issued": "2026-11-01",
            "source": "invented for a test",
            "holidays": [{"name": "测试假日", "first": "2027-01-05", "last": "2027-01-06"}],
        }
    )
    path: Path = tmp_path_factory.mktemp("cal") / "calendar.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return load_calendar(path, "Asia/Shanghai")


@pytest.fixture(scope="module")
def general() -> DeadlinePolicy:
    policy = load_policies(CALENDAR.parent / "policies.yaml").get("P-GENERAL")
    assert policy is not None
    return policy


def test_the_status_names_the_missing_years_and_the_banner_says_what_happens() -> None:
    status = CalendarStatus(version="v1", years=[2025, 2026], missing_years=[2027])
    assert status.provisional
    assert "2027" in (status.warning() or "") and "Monday to Friday" in (status.warning() or "")
    assert status.readiness() == {"provisional": True, "missing_years": [2027], "version": "v1"}
    assert status.notice() == "2027年节假日安排尚未录入，期限暂按周一至周五计算，录入后自动重算。"
    two = CalendarStatus("v1", [2025, 2026], [2027, 2028]).notice()
    assert two is not None and two.startswith("2027年、2028年")

    covered = CalendarStatus(version="v2", years=[2025, 2026, 2027], missing_years=[])
    assert not covered.provisional
    assert covered.warning() is None and covered.readiness() is None and covered.notice() is None


def test_a_receipt_clock_is_counted_again_by_the_policy_s_whistle_receipt(
    shipped: BusinessCalendar, with_2027: BusinessCalendar, general: DeadlinePolicy
) -> None:
    assert recount(general, "whistle_receipt", MONDAY, shipped) is None  # 2027 still missing
    counted = recount(general, "whistle_receipt", MONDAY, with_2027)
    assert counted is not None and counted.due_at == local(2027, 1, 7, 9, 0)


def test_a_referral_clock_is_counted_again_by_the_policy_s_first_response(
    shipped: BusinessCalendar, with_2027: BusinessCalendar, general: DeadlinePolicy
) -> None:
    assert recount(general, "referral_acceptance", MONDAY, shipped) is None  # 2027 missing
    counted = recount(general, "referral_acceptance", MONDAY, with_2027)
    assert counted is not None and counted.kind == "referral_acceptance"
    first_response = recount(general, "first_response", MONDAY, with_2027)
    assert first_response is not None and counted.due_at == first_response.due_at


def test_a_reply_clock_follows_the_case_s_clock_counted_again_or_the_policy(
    with_2027: BusinessCalendar, general: DeadlinePolicy
) -> None:
    case = recount(general, "resolution", MONDAY, with_2027)
    assert case is not None and case.due_at == local(2027, 1, 15, 9, 0)
    following = recount(general, "whistle_reply", MONDAY, with_2027, case)
    assert following is not None
    assert (following.due_at, following.warn_at) == (case.due_at, case.warn_at)
    # Without a case clock to follow: the policy's resolution time from the whistle.
    alone = recount(general, "whistle_reply", local(2027, 1, 8, 9, 0), with_2027)
    assert alone is not None and alone.due_at == local(2027, 1, 19, 9, 0)
    # A case clock still provisional gives a provisional reply: not counted yet.
    provisional = ComputedDeadline("resolution", case.due_at, case.warn_at, "no 2028")
    assert recount(general, "whistle_reply", MONDAY, with_2027, provisional) is None


def test_an_extended_clock_is_counted_again_with_its_extensions_in_order(
    shipped: BusinessCalendar, with_2027: BusinessCalendar, general: DeadlinePolicy
) -> None:
    from services.escalation.recompute import Granted, recount_extended

    counted = recount(general, "resolution", MONDAY, with_2027)
    assert counted is not None  # due Friday 15 January 09:00
    by_days = Granted(local(2027, 1, 15, 9, 0), 2)  # asked when it was due on the 13th
    extended = recount_extended(counted, [by_days], with_2027)
    assert extended is not None and extended.due_at == local(2027, 1, 19, 9, 0)
    by_date = Granted(local(2027, 2, 1, 12, 0), None)
    moved = recount_extended(counted, [by_days, by_date], with_2027)
    assert moved is not None and moved.due_at == local(2027, 2, 1, 12, 0)
    assert moved.warn_at < moved.due_at
    # Working days reaching into 2027 on a calendar still without it: not counted yet.
    december = recount(general, "resolution", local(2026, 12, 1, 9, 0), shipped)
    assert december is not None
    assert recount_extended(december, [Granted(december.due_at, 30)], shipped) is None
