"""The township's joint meeting (联席会议): the rules, as plain functions.

"各镇应当定期召开由镇政府、县级有关执法部门、派驻机构…参加的联席会议": what routine whistles did not
settle goes to a meeting the township convenes with the county departments. A township leader
refers to it one case of the township, or overdue whistles of the township (their cases come
with them); the departments summoned are those named and every department of a referred
whistle. The meeting sits (attendance, minutes), then records decisions (议定事项), each owned by
a county department the meeting summoned or a unit of the township, with a task and a due
time. A decision's clock climbs the same ladder as a whistle's: warning, overdue, chase (催办),
supervise (督办) and the leadership stream, under the policy frozen onto the decision's case;
the owner reports it done and the clock stops.

No database, no clock, no HTTP: the service layer (``meeting_service.py``) gathers the facts
and raises :class:`MeetingRefused` with what these return.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from uuid import UUID

from services.escalation.deadlines import ComputedDeadline

DECISION_CLOCK = "meeting_decision"

RefusalKind = Literal["not_found", "conflict", "invalid", "forbidden"]


@dataclass(frozen=True)
class Refusal:
    """Why a step on a meeting is refused: ``kind`` says which HTTP status answers it, ``rule``
    names it for the problem's type, ``detail`` says it in Chinese."""

    kind: RefusalKind
    rule: str
    detail: str


class MeetingRefused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.detail)
        self.refusal = refusal


@dataclass(frozen=True)
class WhistleFacts:
    """One summoned department of a whistle referred to a meeting, as escalation knows it."""

    whistle_id: UUID
    department_code: str
    case_id: UUID
    township_code: str | None
    overdue: bool  # its receipt or its reply clock is running past its due time
    open: bool  # neither replied to nor lapsed with its case


@dataclass(frozen=True)
class Agenda:
    """What a meeting may be convened on, once checked."""

    case_ids: tuple[UUID, ...]
    whistle_ids: tuple[UUID, ...]
    departments: tuple[str, ...]


def convening(
    township: str,
    *,
    case_townships: dict[UUID, set[str]],
    whistles: Sequence[WhistleFacts],
    whistle_ids: Sequence[UUID],
    departments: Sequence[str],
    known_departments: Collection[str],
) -> Agenda:
    """The cases, whistles and departments of a meeting ``township`` convenes, or
    :class:`MeetingRefused`. ``case_townships`` holds each case named (and only those) with
    the townships escalation knows it under — empty for a case it does not know."""
    for case_id, townships in case_townships.items():
        if township not in townships:
            # Another township's case reads as missing, as everywhere in the API.
            raise MeetingRefused(
                Refusal("not_found", "no-case", f"没有可提请联席会议的案件 {case_id}")
            )
    by_whistle: dict[UUID, list[WhistleFacts]] = {}
    for facts in whistles:
        by_whistle.setdefault(facts.whistle_id, []).append(facts)
    referred: list[WhistleFacts] = []
    for whistle_id in dict.fromkeys(whistle_ids):
        rows = [w for w in by_whistle.get(whistle_id, []) if w.township_code == township]
        if not rows:
            raise MeetingRefused(Refusal("not_found", "no-whistle", f"本乡镇没有吹哨 {whistle_id}"))
        overdue = [w for w in rows if w.open and w.overdue]
        if not overdue:
            raise MeetingRefused(
                Refusal(
                    "invalid",
                    "whistle-not-overdue",
                    f"吹哨 {whistle_id} 没有超期未报到或未回复的部门，按常规吹哨报到办理即可，"
                    "无需提请联席会议",
                )
            )
        referred.extend(overdue)
    case_ids = tuple(dict.fromkeys([*case_townships, *(w.case_id for w in referred)]))
    if not case_ids:
        raise MeetingRefused(
            Refusal("invalid", "nothing-to-settle", "请提请至少一个案件或一项超期吹哨")
        )
    summoned = tuple(dict.fromkeys([*departments, *(w.department_code for w in referred)]))
    unknown = [d for d in summoned if d not in known_departments]
    if unknown:
        raise MeetingRefused(
            Refusal("invalid", "unknown-department", f"未知的县直部门：{'、'.join(unknown)}")
        )
    if not summoned:
        raise MeetingRefused(Refusal("invalid", "no-department", "请至少通知一个县直部门参会"))
    return Agenda(case_ids, tuple(dict.fromkeys(w.whistle_id for w in referred)), summoned)


def attendance(summoned: Sequence[str], attended: Sequence[str], *, held: bool) -> list[str]:
    """The summoned departments that did not attend, or :class:`MeetingRefused`."""
    if held:
        raise MeetingRefused(Refusal("conflict", "already-held", "会议纪要已记录，不能重复记录"))
    strangers = [d for d in attended if d not in summoned]
    if strangers:
        raise MeetingRefused(
            Refusal(
                "invalid",
                "not-summoned",
                f"出席部门须为已通知参会的部门：{'、'.join(strangers)} 未被通知",
            )
        )
    return [d for d in summoned if d not in attended]


OwnerKind = Literal["department", "unit"]


def deciding(
    *,
    held: bool,
    case_id: UUID | None,
    meeting_cases: Sequence[UUID],
    owner_kind: OwnerKind,
    owner_code: str,
    summoned: Collection[str],
    township_units: Collection[str],
    due_at: datetime,
    now: datetime,
) -> UUID:
    """The case a decision settles, or :class:`MeetingRefused`: the meeting has sat, the case
    is one of the meeting's (may be left out when it has one), the owner a department the
    meeting summoned or a unit of the township, the due time still ahead."""
    if not held:
        raise MeetingRefused(
            Refusal("conflict", "not-held", "会议尚未记录出席情况和会议纪要，不能记录议定事项")
        )
    if case_id is None:
        if len(meeting_cases) != 1:
            raise MeetingRefused(
                Refusal("invalid", "case-required", "会议涉及多个案件，请指明议定事项所属案件")
            )
        case_id = meeting_cases[0]
    elif case_id not in meeting_cases:
        raise MeetingRefused(
            Refusal("invalid", "not-on-agenda", f"案件 {case_id} 不在本次会议的议题中")
        )
    if owner_kind == "department" and owner_code not in summoned:
        raise MeetingRefused(
            Refusal(
                "invalid",
                "owner-not-summoned",
                f"责任部门须为本次会议通知参会的部门：{owner_code} 未被通知",
            )
        )
    if owner_kind == "unit" and owner_code not in township_units:
        raise MeetingRefused(
            Refusal("invalid", "owner-not-township-unit", f"责任单位 {owner_code} 不属于本乡镇")
        )
    if due_at <= now:
        raise MeetingRefused(Refusal("invalid", "due-passed", "完成时限须晚于当前时间"))
    return case_id


def decision_deadline(start: datetime, due_at: datetime, fraction: float) -> ComputedDeadline:
    """A decision's clock: due when the meeting said, warned at the policy's fraction of the
    time between the recording and the due time (natural time: the meeting set a date, not a
    number of working days, so no calendar year can make it provisional)."""
    return ComputedDeadline(DECISION_CLOCK, due_at, start + (due_at - start) * fraction)


def reporting(*, owner_kind: str, owner_code: str, acting_for: Collection[str], done: bool) -> None:
    """Whether the caller, acting for ``acting_for`` (department codes or unit ids of the
    owner's kind, ``*`` for every one), may report the decision done: only its owner, once."""
    if owner_code not in acting_for and "*" not in acting_for:
        what = "部门" if owner_kind == "department" else "单位"
        raise MeetingRefused(
            Refusal(
                "forbidden", "not-owner", f"该议定事项的责任{what}为 {owner_code}，无权报告办结"
            )
        )
    if done:
        raise MeetingRefused(Refusal("conflict", "already-done", "该议定事项已报告办结"))
