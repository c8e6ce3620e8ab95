"""``whistle dept-listen --dept CODE [--county CODE]``: a county department's reference consumer.

The example a department's own IT team copies: it reads the department's topic
(``escalation.dept.<code>.v1`` in the default county, ``escalation.dept.<county>.<code>.v1``
in another, ``--county``) with a consumer group of its own, prints each summons (吹哨),
chase (催办), supervision (督办) and moved reply deadline (延期) on one line, and reports in
(报到) by producing ``WhistleReceiptSubmitted`` onto ``escalation.whistles.v1`` — escalation
records it and answers with ``WhistleReported`` on the same topic. Only the contracts package
is needed.

A receipt carries the department's own token (role ``county_department``, scope
``dept:<CODE>``, as for the HTTP API) in the Kafka header ``authorization: Bearer <jwt>``:
escalation dead-letters a submission without one, with one that is not valid, or for another
department than the token's. The token comes from ``WHISTLE_DEPT_TOKEN`` (or ``--token``).

- ``--ack-with PREFIX``: report in to every summons at once with the receipt number
  ``PREFIX-<first 8 hex digits of the whistle id>`` (the same number if a summons comes twice);
- otherwise, on a terminal, it asks ``报到? [y/N]`` and then for the receipt number;
- ``--max-messages N`` stops after N messages;
- without a token it only listens (it cannot report in).

The offset is committed after a message is printed and answered, so a restarted listener
goes on where it stopped (at least once: a summons may be shown again after a crash, and a
second receipt for it is ignored by escalation).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from contracts.acls import department_group_prefix
from contracts.envelope import CONTENT_TYPE, CloudEvent, new_event
from contracts.events import (
    CaseChased,
    CaseSupervised,
    DeadlineRecomputed,
    ExtensionDecided,
    MeetingDecisionRecorded,
    MeetingSummoned,
    WhistleNotified,
    WhistleReceiptSubmitted,
)
from contracts.topics import DEPARTMENTS, HEADER_AUTHORIZATION, WHISTLES, BrokerDepartment
from services.runtime.kafka import NO_AUTH, BrokerAuth

URGENCY = {"emergency": "紧急", "utilities": "水电气热", "general": "一般", "complex": "疑难"}
CLOCK = {"whistle_receipt": "报到", "whistle_reply": "回复", "meeting_decision": "议定事项"}

Ask = Callable[[str], str]


def describe(event: CloudEvent, zone: ZoneInfo) -> str:
    """One readable line for a message on a department's topic."""

    def at(value: datetime) -> str:
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    if event.type == WhistleNotified.event_type:
        n = event.payload(WhistleNotified)
        return (
            f"[吹哨] 案件 {n.case_id} 吹哨 {n.whistle_id} 乡镇 {n.township_code or '-'} "
            f"事项 {n.matter_code or '-'} 紧急程度 {URGENCY.get(n.urgency, n.urgency)} "
            f"事由 {n.reason}（{n.reason_code}） "
            f"报到时限 {at(n.receipt_due_at)} 回复时限 {at(n.reply_due_at)}"
        )
    if event.type in (CaseChased.event_type, CaseSupervised.event_type):
        step = event.payload(CaseChased if event.type == CaseChased.event_type else CaseSupervised)
        label = "催办" if event.type == CaseChased.event_type else "督办"
        if step.decision_id is not None:
            return (
                f"[{label}] 案件 {step.case_id} 联席会议议定事项 {step.decision_id} "
                f"已超期，时限 {at(step.due_at)}"
            )
        return (
            f"[{label}] 案件 {step.case_id} 吹哨 {step.whistle_id} "
            f"{CLOCK.get(step.kind, step.kind)}已超期，时限 {at(step.due_at)}"
        )
    if event.type == ExtensionDecided.event_type:
        moved = event.payload(ExtensionDecided)
        if moved.new_due_at is not None:
            return (
                f"[延期] 案件 {moved.case_id} 吹哨 {moved.whistle_id} "
                f"案件办理时限已延期，回复时限由 {at(moved.old_due_at)} 延至 {at(moved.new_due_at)}"
            )
    if event.type == DeadlineRecomputed.event_type:
        recounted = event.payload(DeadlineRecomputed)
        return (
            f"[重算] 案件 {recounted.case_id} 吹哨 {recounted.whistle_id} "
            f"{CLOCK.get(recounted.kind, recounted.kind)}时限按新录入的节假日安排重算，"
            f"由 {at(recounted.old_due_at)} 改为 {at(recounted.due_at)}"
        )
    if event.type == MeetingSummoned.event_type:
        summoned = event.payload(MeetingSummoned)
        return (
            f"[联席会议] 会议 {summoned.meeting_id} 乡镇 {summoned.township_code} "
            f"时间 {at(summoned.held_at)} 地点 {summoned.place} "
            f"议题 {'；'.join(summoned.agenda)}"
        )
    if event.type == MeetingDecisionRecorded.event_type:
        decided = event.payload(MeetingDecisionRecorded)
        return (
            f"[议定事项] 会议 {decided.meeting_id} 案件 {decided.case_id} "
            f"事项 {decided.decision_id} {decided.task} 完成时限 {at(decided.due_at)}"
        )
    return f"[其他] {event.type} 案件 {event.subject}"


def receipt_for(
    notice: WhistleNotified,
    source: str,
    receipt_no: str,
    now: datetime,
    county: str | None = None,
) -> CloudEvent:
    """The 报到 a department produces onto ``escalation.whistles.v1``, in the ``county`` of
    the summons."""
    submitted = WhistleReceiptSubmitted(
        case_id=notice.case_id,
        whistle_id=notice.whistle_id,
        department_code=notice.department_code,
        receipt_no=receipt_no,
    )
    return new_event(source, str(notice.case_id), submitted, now, county)


def submission_headers(token: str) -> list[tuple[str, bytes]]:
    """The Kafka headers of a submission: its content type and the department's token."""
    return [
        ("content-type", CONTENT_TYPE.encode()),
        (HEADER_AUTHORIZATION, f"Bearer {token}".encode()),
    ]


def receipt_number(notice: WhistleNotified, ack_with: str | None, ask: Ask | None) -> str | None:
    """The receipt number to report in with, or None to leave the summons for now."""
    if ack_with:
        return f"{ack_with}-{notice.whistle_id.hex[:8]}"
    if ask is None or ask("报到? [y/N] ").strip().lower() not in ("y", "yes", "是"):
        return None
    return ask("回执号: ").strip() or None


async def listen(
    *,
    bootstrap: str,
    auth: BrokerAuth = NO_AUTH,
    department: BrokerDepartment,
    group: str | None,
    ack_with: str | None,
    ask: Ask | None,
    max_messages: int | None,
    zone: ZoneInfo,
    say: Callable[[str], None],
    token: str | None = None,
) -> int:
    """Print the department's messages (and report in with ``token``, if given) until
    ``max_messages``; returns how many were printed."""
    source = DEPARTMENTS.source_for(department.code)
    consumer = AIOKafkaConsumer(
        department.topic,
        bootstrap_servers=bootstrap,
        group_id=group or f"{department_group_prefix(department)}listener",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **auth.client_options(),
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **auth.client_options())
    await consumer.start()
    await producer.start()
    seen = 0
    try:
        while max_messages is None or seen < max_messages:
            record = await consumer.getone()
            try:
                event = CloudEvent.model_validate_json(record.value or b"")
            except ValueError as exc:
                say(f"[无法解析] 偏移量 {record.offset}：{exc}")
            else:
                say(describe(event, zone))
                if event.type == WhistleNotified.event_type and token:
                    notice = event.payload(WhistleNotified)
                    number = await asyncio.to_thread(receipt_number, notice, ack_with, ask)
                    if number:
                        now = datetime.now(zone)
                        receipt = receipt_for(notice, source, number, now, event.county)
                        await producer.send_and_wait(
                            WHISTLES,
                            value=receipt.to_bytes(),
                            key=str(notice.case_id).encode(),
                            headers=submission_headers(token),
                        )
                        say(f"  → 已提交报到，回执号 {number}")
            await consumer.commit()
            seen += 1
    finally:
        await producer.stop()
        await consumer.stop()
    return seen


def main(
    *,
    bootstrap: str,
    auth: BrokerAuth = NO_AUTH,
    department: BrokerDepartment,
    group: str | None,
    ack_with: str | None,
    max_messages: int | None,
    timezone: str,
    token: str | None = None,
) -> int:
    ask: Ask | None = input if sys.stdin.isatty() and not ack_with else None
    if ack_with and not token:
        county = f" --scope county:{department.county}" if department.county else ""
        print(
            "whistle dept-listen: --ack-with needs the department's token "
            "(WHISTLE_DEPT_TOKEN or --token; `whistle token --role county_department "
            f"--scope dept:{department.code}{county}` in development)",
            file=sys.stderr,
        )
        return 2
    if not token:
        ask = None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            listen(
                bootstrap=bootstrap,
                auth=auth,
                department=department,
                group=group,
                ack_with=ack_with,
                ask=ask,
                max_messages=max_messages,
                zone=ZoneInfo(timezone),
                say=lambda line: print(line, flush=True),
                token=token,
            )
        )
    return 0
