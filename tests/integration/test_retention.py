"""Retention (issue 20, item 5): what each service forgets once it has been kept long enough —
and what it must not touch: open cases, recently closed ones, files a tip still cites.

Everything here happened in 2020 and the sweeps run on a clock in 2020–2023, so that they reach
only this module's rows, never what other tests wrote at today's date."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select
from uuid6 import uuid7

from contracts.events import PersonalDataErased
from services.dispatch.app import create_app as create_dispatch
from services.dispatch.models import Case, CaseTimelineEntry, CaseTip, TipText, TriageLabel
from services.intake.app import create_app as create_intake
from services.intake.models import Attachment, Tip, TipFeedback, TipTimelineEntry
from services.launcher.cli import main
from services.runtime.inbox import InboxRecord
from services.runtime.outbox import OutboxMessage
from services.runtime.retention import ERASED_TEXT
from services.runtime.service import Runtime
from services.runtime.settings import Settings
from services.runtime.uploads import content_path
from tests.integration.conftest import MovableClock, _in_process

CLOSED = datetime(2020, 3, 1, 8, 0, tzinfo=UTC)
WORDS = "我家楼下（幸福路8号）有人占道摆摊"


@pytest.fixture
async def intake(migrated: Settings) -> AsyncIterator[tuple[Runtime, MovableClock]]:
    clock = MovableClock(CLOSED)
    async for _, runtime in _in_process(create_intake(migrated, clock)):
        yield runtime, clock


@pytest.fixture
async def dispatch(migrated: Settings) -> AsyncIterator[tuple[Runtime, MovableClock]]:
    clock = MovableClock(CLOSED)
    async for _, runtime in _in_process(create_dispatch(migrated, clock)):
        yield runtime, clock


def _stored_file(settings: Settings) -> str:
    digest = secrets.token_hex(32)
    path = content_path(settings.attachments_path, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 a photo")
    return digest


async def _tip(
    runtime: Runtime, timeline: list[tuple[str, datetime]], attachments: list[str] = ()
) -> UUID:
    """A tip with a contact, a place, a photo and a rating comment, through ``timeline``."""
    tip = Tip(
        id=uuid7(),
        county="140999",
        tracking_no=f"QX20200101-{secrets.randbelow(10**6):06d}{secrets.token_hex(2)}",
        access_code_hash="x",
        channel="web",
        text=WORDS,
        lat=38.76,
        lon=113.22,
        address="幸福路8号",
        grid_id="T03V02G01",
        contact_sealed=b"sealed",
        masked_phone="139****5678",
        phone_hash="hash",
        attachments=list(attachments),
        resolution_note="当事人王五已整改",
        request_digest="d" * 64,
        received_at=timeline[0][1],
        status=timeline[-1][0],
    )
    async with runtime.transaction() as session:
        session.add(tip)
        await session.flush()
        for status, at in timeline:
            session.add(TipTimelineEntry(tip_id=tip.id, status=status, at=at))
        session.add(
            TipFeedback(
                tip_id=tip.id,
                resolution_round=1,
                case_id=uuid7(),
                rating="satisfied",
                comment="王师傅很负责",
                rated_at=timeline[-1][1],
            )
        )
        for digest in attachments:
            await session.merge(
                Attachment(sha256=digest, content_type="image/jpeg", size=10, stored_at=CLOSED)
            )
    return tip.id


def _closed(at: datetime) -> list[tuple[str, datetime]]:
    return [
        ("received", at - timedelta(days=5)),
        ("resolved", at - timedelta(days=1)),
        ("closed", at),
    ]


async def _read(runtime: Runtime, tip_id: UUID) -> tuple[Tip, TipFeedback]:
    async with runtime.sessions() as session:
        tip = await session.get(Tip, tip_id)
        feedback = await session.scalar(select(TipFeedback).where(TipFeedback.tip_id == tip_id))
        assert tip is not None and feedback is not None
        return tip, feedback


def removed(service: str, what: str) -> float:
    value = REGISTRY.get_sample_value(
        "whistle_retention_removed_total", {"service": service, "what": what}
    )
    return value or 0.0


async def test_a_contact_is_forgotten_180_days_after_the_case_closed_and_not_before(
    intake: tuple[Runtime, MovableClock],
) -> None:
    runtime, clock = intake
    tip_id = await _tip(runtime, _closed(CLOSED))
    still_open = await _tip(runtime, [("received", CLOSED - timedelta(days=400))])

    clock.now = CLOSED + timedelta(days=180) - timedelta(minutes=1)
    await runtime.retention.run_once()
    assert (await _read(runtime, tip_id))[0].masked_phone == "139****5678"

    before = removed("intake", "contact")
    clock.now = CLOSED + timedelta(days=180, minutes=1)
    await runtime.retention.run_once()
    tip, _ = await _read(runtime, tip_id)
    assert (tip.contact_sealed, tip.masked_phone, tip.phone_hash) == (None, None, None)
    assert tip.text == WORDS and tip.erased_at is None  # the words stay three years
    assert removed("intake", "contact") == before + 1
    # An open case's citizen stays reachable, however old the tip.
    assert (await _read(runtime, still_open))[0].masked_phone == "139****5678"


async def test_a_tip_s_words_place_photos_and_comments_go_after_three_years(
    intake: tuple[Runtime, MovableClock], migrated: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    runtime, clock = intake
    own, shared, cited_elsewhere = (_stored_file(migrated) for _ in range(3))
    erased = await _tip(runtime, _closed(CLOSED), [own, shared])
    # A case reopened and closed again counts from its last close.
    reclosed = await _tip(
        runtime,
        [
            *_closed(CLOSED),
            ("in_progress", CLOSED + timedelta(days=2)),
            ("closed", CLOSED + timedelta(days=40)),
        ],
        [shared, cited_elsewhere],
    )
    clock.now = CLOSED + timedelta(days=1095, hours=1)
    with caplog.at_level(logging.INFO, "services.runtime.retention"):
        await runtime.retention.run_once()

    tip, feedback = await _read(runtime, erased)
    assert tip.text == ERASED_TEXT
    assert (tip.address, tip.lat, tip.lon, tip.resolution_note) == (None, None, None, None)
    assert tip.attachments == [] and tip.masked_phone is None and feedback.comment is None
    assert tip.erased_at == clock.now
    assert (tip.tracking_no, tip.grid_id, tip.channel) != (None, None, None)  # the record stays
    kept, _ = await _read(runtime, reclosed)
    assert kept.text == WORDS and kept.attachments == [shared, cited_elsewhere]

    # The photo only the erased tip cited is gone, row and file; the one another tip cites stays.
    async with runtime.sessions() as session:
        rows = set(await session.scalars(select(Attachment.sha256)))
    assert own not in rows and {shared, cited_elsewhere} <= rows
    assert not content_path(migrated.attachments_path, own).exists()
    assert content_path(migrated.attachments_path, shared).exists()
    assert any("retention: removed" in r.getMessage() for r in caplog.records)

    # Each erased tip tells dispatch and the ledger, through the outbox, why and by what rule.
    erasures = await _erasures(runtime)
    assert erased in erasures and reclosed not in erasures
    told = erasures[erased]
    assert (told["reason"], told["erased_by"], told["tracking_no"]) == (
        "retention",
        "whistle/intake",
        tip.tracking_no,
    )
    assert "第四十七条" in told["legal_basis"] and "1095" in told["legal_basis"]


async def _erasure_events(runtime: Runtime) -> list[dict[str, Any]]:
    """The payloads of the ``whistle.personal_data.erased`` events intake staged."""
    async with runtime.sessions() as session:
        events = await session.scalars(
            select(OutboxMessage.event).where(
                OutboxMessage.event["type"].astext == PersonalDataErased.event_type  # type: ignore[index]
            )
        )
        return [e["data"] for e in events]


async def _erasures(runtime: Runtime) -> dict[UUID, dict[str, Any]]:
    return {UUID(data["tip_id"]): data for data in await _erasure_events(runtime)}


async def test_whistle_erase_erases_one_tip_at_once_whatever_its_case(
    intake: tuple[Runtime, MovableClock],
    migrated: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """On request: ``whistle erase TRACKING_NO``, the case still open; a second time changes
    nothing; an unknown number exits 1."""
    runtime, _ = intake
    open_tip = await _tip(runtime, [("received", CLOSED)])
    untouched = await _tip(runtime, [("received", CLOSED)])
    tracking_no = (await _read(runtime, open_tip))[0].tracking_no
    monkeypatch.setenv("WHISTLE_DATABASE_URL", str(migrated.database_url))

    assert await asyncio.to_thread(main, ["erase", tracking_no, "--by", "S0042"]) == 0
    assert "已删除" in capsys.readouterr().out
    tip, feedback = await _read(runtime, open_tip)
    assert tip.text == ERASED_TEXT and tip.address is None and tip.masked_phone is None
    assert tip.request_digest is None
    assert feedback.comment is None and tip.erased_at is not None
    told = (await _erasures(runtime))[open_tip]
    assert (told["reason"], told["erased_by"]) == ("request", "S0042")
    assert (await _read(runtime, untouched))[0].text == WORDS

    assert await asyncio.to_thread(main, ["erase", tracking_no]) == 0
    assert "删除过" in capsys.readouterr().out
    assert list(await _erasures(runtime)).count(open_tip) == 1
    assert await asyncio.to_thread(main, ["erase", "QX20200101-nonexistent"]) == 1
    assert "未找到" in capsys.readouterr().err


async def test_an_upload_no_tip_cites_goes_after_a_day(
    intake: tuple[Runtime, MovableClock], migrated: Settings
) -> None:
    runtime, clock = intake
    digest = _stored_file(migrated)
    async with runtime.transaction() as session:
        session.add(Attachment(sha256=digest, content_type="image/jpeg", size=10, stored_at=CLOSED))
    clock.now = CLOSED + timedelta(hours=23)
    await runtime.retention.run_once()
    assert content_path(migrated.attachments_path, digest).exists()
    clock.now = CLOSED + timedelta(hours=25)
    await runtime.retention.run_once()
    assert not content_path(migrated.attachments_path, digest).exists()


async def test_the_inbox_forgets_what_it_processed_after_its_retention(
    intake: tuple[Runtime, MovableClock], migrated: Settings
) -> None:
    runtime, clock = intake
    old, recent = str(uuid7()), str(uuid7())
    async with runtime.transaction() as session:
        for event_id, at in ((old, CLOSED), (recent, CLOSED + timedelta(days=30))):
            session.add(
                InboxRecord(source="test", event_id=event_id, type="t", topic="t", processed_at=at)
            )
    clock.now = CLOSED + timedelta(days=migrated.inbox_retention_days, hours=1)
    await runtime.retention.run_once()
    async with runtime.sessions() as session:
        left = set(
            await session.scalars(select(InboxRecord.event_id).where(InboxRecord.source == "test"))
        )
    assert left == {recent}


async def test_dispatch_forgets_its_copy_of_the_words_and_the_point_with_intake(
    dispatch: tuple[Runtime, MovableClock],
) -> None:
    runtime, clock = dispatch

    async def case(status: str, closed: datetime | None) -> tuple[UUID, UUID, UUID]:
        row = Case(
            county="140999",
            id=uuid7(), tip_id=uuid7(), status=status, matter_code="CG-001",
            township_code="T03", village_code="T03V02", grid_id="T03V02G01",
            lat=38.76, lon=113.22, urgency="general", catalogue_version="test",
            created_at=CLOSED - timedelta(days=5), updated_at=CLOSED,
        )  # fmt: skip
        merged = uuid7()
        async with runtime.transaction() as session:
            session.add(row)
            await session.flush()
            session.add(
                CaseTip(
                    tip_id=merged,
                    case_id=row.id,
                    joined_at=CLOSED - timedelta(days=4),
                    rule="same_grid",
                    tip={"text": WORDS, "contact": {"masked_phone": "139****5678"}},
                )
            )
            for tip in (row.tip_id, merged):
                session.add(
                    TipText(
                        tip_id=tip,
                        text=WORDS,
                        address="幸福路8号",
                        channel="web",
                        received_at=CLOSED,
                    )
                )
            session.add(
                TriageLabel(
                    id=uuid7(), tip_id=row.tip_id, case_id=row.id, text=WORDS,
                    matter_code="CG-001", actor="d1", actor_role="dispatcher",
                    labelled_at=CLOSED - timedelta(days=5),
                )
            )  # fmt: skip
            if closed is not None:
                session.add(
                    CaseTimelineEntry(
                        source="whistle.dispatch", event_id=str(uuid7()), case_id=row.id,
                        type="whistle.case.closed", time=closed, data={},
                    )
                )  # fmt: skip
        return row.id, row.tip_id, merged

    closed_id, opened_for, merged = await case("closed", CLOSED)
    open_id, open_tip, _ = await case("in_progress", None)
    clock.now = CLOSED + timedelta(days=1095, hours=1)
    await runtime.retention.run_once()
    async with runtime.sessions() as session:
        texts = {t.tip_id: t for t in await session.scalars(select(TipText))}
        joined = {t.case_id: t.tip for t in await session.scalars(select(CaseTip))}
        closed_case = await session.get(Case, closed_id)
        open_case = await session.get(Case, open_id)
        labelled = set(await session.scalars(select(TriageLabel.tip_id)))
    assert closed_case is not None and open_case is not None
    # The words a dispatcher labelled for the triage model go with the tip's.
    assert opened_for not in labelled and open_tip in labelled
    for tip in (opened_for, merged):
        assert (texts[tip].text, texts[tip].address) == (ERASED_TEXT, None)
    assert (closed_case.lat, closed_case.lon) == (None, None)
    assert joined[closed_id] == {} and joined[open_id]["text"] == WORDS
    assert closed_case.village_code == "T03V02"  # the county's record stays
    assert texts[open_tip].text == WORDS and open_case.lat == 38.76
