"""The whole pipeline under load: tips posted to intake until each is recorded as routed
and deadlined in the ledger.

Starts its own embedded PostgreSQL and Tansu broker on free ports in a temporary directory,
runs the four services as processes (as ``whistle up`` does), posts tips with a fixed
concurrency, then reads timings from the ledger's own records. Everything is on loopback and
the run is bounded in count and time.

The tips are distinct, as a county's are: each original names a catalogue matter (by its
strongest keyword, in a sentence of its own) in a grid no other original of that matter uses,
so that it opens a case of its own; ``--duplicates`` of them (5 % by default) report an earlier
tip's problem again, in other words, in the same grid, and join its case (merging.py). Each
tip's outcome is read back from the ledger — opened and deadlined, merged, or waiting in manual
triage — and latency is counted per outcome from events that name that tip, never from a case
some other tip opened (``measure``).

    python -m bench pipeline [--tips 1000] [--concurrency 20] [--rate 0] [--duplicates 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from bench.stack import LOAD_LIMITS, REPO, embedded_stack, print_table, running_services
from reference.county import ReferenceData, load_reference


@dataclass(frozen=True)
class LoadTip:
    text: str
    grid_id: str
    matter_code: str
    # The tip (by its place in the load) whose problem this one reports again; None: new.
    duplicate_of: int | None = None


OPENERS = ("", "你好，", "麻烦反映一下，", "我要投诉，", "请领导重视一下，", "跟你们说个事，")
PLACES = ("村口", "路边", "小区门口", "学校附近", "菜市场旁边", "桥头", "后街", "我家楼下")
SINCE = ("好几天了", "一个多月了", "从上周开始", "天天这样", "最近总是这样", "已经很久了")
CLOSERS = ("", "请尽快处理。", "希望有人来管管。", "谢谢！", "盼复。", "请派人来看看。")
RETOLD = ("还是{place}那个事，{word}，到现在也没人管", "我也反映一下，{place}{word}的问题")


def generate_load(
    reference: ReferenceData, count: int, duplicate_share: float = 0.05, seed: int = 7
) -> list[LoadTip]:
    """``count`` tips over the catalogue and every grid (fixed seed): originals of distinct
    (matter, grid) pairs, each naming its matter by the matter's strongest keyword, and about
    ``duplicate_share`` of them retelling an earlier original's problem, later in the load."""
    rng = random.Random(seed)
    keyword = {
        item.code: max(item.keywords, key=lambda k: (k.weight, k.word)).word
        for item in reference.catalogue.items
        if item.keywords
    }
    pairs = [(code, grid) for code in sorted(keyword) for grid in sorted(reference.grids)]
    duplicates = round(count * duplicate_share)
    originals = count - duplicates
    if originals > len(pairs) or (duplicates and not originals):
        raise ValueError(f"{count} tips need {originals} of {len(pairs)} (matter, grid) pairs")
    rng.shuffle(pairs)
    # Each tip gets a place in the posting order: originals at 0, 1, 2…; a retelling anywhere
    # after the original it repeats.
    slots: list[tuple[float, LoadTip, int | None]] = []
    for n, (code, grid) in enumerate(pairs[:originals]):
        village = reference.grids[grid][1].name
        text = (
            f"{rng.choice(OPENERS)}{village}{rng.choice(PLACES)}{keyword[code]}，"
            f"{rng.choice(SINCE)}（第{n}号）。{rng.choice(CLOSERS)}"
        )
        slots.append((float(n), LoadTip(text, grid, code), None))
    for _ in range(duplicates):
        n = rng.randrange(originals)
        code, grid = pairs[n]
        text = rng.choice(RETOLD).format(place=rng.choice(PLACES), word=keyword[code])
        slots.append((rng.uniform(n + 0.01, originals), LoadTip(text, grid, code), n))
    slots.sort(key=lambda slot: slot[0])
    position = {int(at): i for i, (at, _, of) in enumerate(slots) if of is None}
    return [
        tip if of is None else LoadTip(tip.text, tip.grid_id, tip.matter_code, position[of])
        for _, tip, of in slots
    ]


class Outcome(StrEnum):
    DEADLINED = "opened a case, deadlines set"
    MERGED = "merged into an open case"
    MANUAL = "waiting in manual triage"
    PENDING = "not recorded (yet)"


@dataclass(frozen=True)
class LedgerTimes:
    """What the ledger recorded, as the latency measure needs it (times are the ledger's
    ``recorded_at``, but a tip's own ``event_time``, when intake accepted it)."""

    received: Mapping[str, datetime]  # tip id → accepted by intake
    opened: Mapping[str, str]  # tip id → the case it opened
    merged: Mapping[str, datetime]  # tip id → recorded as merged into a case
    triage: Mapping[str, datetime]  # case id → first sent to manual triage
    deadlines: Mapping[str, datetime]  # case id → first deadlines set


@dataclass
class Measured:
    outcomes: Counter[Outcome] = field(default_factory=Counter)
    # Seconds, per outcome, from the tip's acceptance to the event that names it.
    latencies: dict[Outcome, list[float]] = field(default_factory=dict)


def measure(times: LedgerTimes) -> Measured:
    """Each tip's outcome and latency. A tip's latency ends at an event caused by that tip — the
    deadlines of the case it opened, the merge that names it, the triage of its case — so it
    cannot end before the tip was accepted; a tip merged into an older case is counted as
    merged, never against the deadlines that case got before it arrived."""
    measured = Measured()
    for tip, accepted in times.received.items():
        case = times.opened.get(tip)
        if tip in times.merged:
            outcome, end = Outcome.MERGED, times.merged[tip]
        elif case is not None and case in times.deadlines:
            outcome, end = Outcome.DEADLINED, times.deadlines[case]
        elif case is not None and case in times.triage:
            outcome, end = Outcome.MANUAL, times.triage[case]
        else:
            measured.outcomes[Outcome.PENDING] += 1
            continue
        measured.outcomes[outcome] += 1
        measured.latencies.setdefault(outcome, []).append((end - accepted).total_seconds())
    return measured


LEDGER_TIMES = """
SELECT type, subject, event_time, recorded_at,
       convert_from(canonical, 'UTF8')::jsonb -> 'data' ->> 'tip_id' AS tip_id
FROM ledger_entry
WHERE type IN ('whistle.tip.received', 'whistle.case.opened', 'whistle.case.merged',
               'whistle.case.triage_required', 'whistle.deadlines.set')
ORDER BY seq
"""


async def read_ledger_times(conn: asyncpg.Connection) -> LedgerTimes:
    received: dict[str, datetime] = {}
    opened: dict[str, str] = {}
    merged: dict[str, datetime] = {}
    triage: dict[str, datetime] = {}
    deadlines: dict[str, datetime] = {}
    for row in await conn.fetch(LEDGER_TIMES):
        kind, subject = row["type"], row["subject"]
        if kind == "whistle.tip.received":
            received[subject] = row["event_time"]
        elif kind == "whistle.case.opened":
            opened[row["tip_id"]] = subject
        elif kind == "whistle.case.merged":
            merged.setdefault(row["tip_id"], row["recorded_at"])
        elif kind == "whistle.case.triage_required":
            triage.setdefault(subject, row["recorded_at"])
        else:
            deadlines.setdefault(subject, row["recorded_at"])
    return LedgerTimes(received, opened, merged, triage, deadlines)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Posted:
    """What ``post_tips`` saw; filled as it goes, so that it holds what was accepted even if
    posting stopped with an exception."""

    # Per accepted tip, from its first attempt to intake's 201/200 (what the citizen waited).
    latencies: list[float] = field(default_factory=list)
    # Tip number → the tracking number intake answered with.
    tracking: dict[int, str] = field(default_factory=dict)
    # Answers that were not an acceptance and were retried: "503", "429", "connection (…)".
    retried: Counter[str] = field(default_factory=Counter)
    # Tips whose client stopped retrying (``retry_for`` ran out) without an acceptance.
    given_up: list[int] = field(default_factory=list)
    # First POST to the latest acceptance.
    elapsed: float = 0.0


# What a client retries by default: the answers intake gives when it is briefly unable (rate
# limit, draining, its database unavailable) and a proxy's for a backend that is away.
RETRIED_STATUSES = frozenset({429, 502, 503, 504})


async def post_tips(
    url: str,
    load: Sequence[LoadTip],
    concurrency: int,
    rate: float = 0,
    *,
    retry_for: float = 0,
    retry_statuses: frozenset[int] = RETRIED_STATUSES,
    on_accepted: Callable[[int], None] | None = None,
    posted: Posted | None = None,
) -> Posted:
    """Post the ``load`` from ``concurrency`` clients, at most ``rate`` a second (0: no cap).

    Each tip carries its own Idempotency-Key. With ``retry_for`` > 0 a client that is answered
    one of ``retry_statuses`` or loses its connection sends the same request, same key, again —
    after the Retry-After it was given or a short backoff — for up to that many seconds per tip,
    as a citizen's app would, then gives that tip up; without, any refusal raises.
    ``on_accepted`` hears the running count of accepted tips."""
    posted = posted if posted is not None else Posted()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(len(load)):
        queue.put_nowait(n)
    run = uuid.uuid4().hex[:12]

    began = time.perf_counter()

    async def post(client: httpx.AsyncClient, n: int) -> None:
        tip = load[n]
        headers = {"Idempotency-Key": f"bench-{run}-{n}"}
        started = time.perf_counter()
        backoff = 0.2
        while True:
            try:
                response = await client.post(
                    f"{url}/v1/tips",
                    json={"text": tip.text, "grid_id": tip.grid_id},
                    headers=headers,
                )
            except httpx.TransportError as exc:
                # Sent or not, the key makes a second attempt safe: intake answers a retry of a
                # tip it already took with the original.
                if not retry_for:
                    raise
                refusal, wait = f"connection ({type(exc).__name__})", backoff
            else:
                if response.status_code in (200, 201):
                    posted.latencies.append(time.perf_counter() - started)
                    posted.tracking[n] = response.json()["tracking_no"]
                    posted.elapsed = time.perf_counter() - began
                    if on_accepted is not None:
                        on_accepted(len(posted.tracking))
                    return
                if not retry_for or response.status_code not in retry_statuses:
                    response.raise_for_status()
                    raise RuntimeError(f"intake answered {response.status_code}: {response.text}")
                refusal, wait = str(response.status_code), _retry_after(response, backoff)
            if time.perf_counter() - started + wait > retry_for:
                posted.given_up.append(n)
                return
            posted.retried[refusal] += 1
            await asyncio.sleep(wait)
            backoff = min(2.0, backoff * 2)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if rate:
                await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            await post(client, n)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return posted


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return default


async def wait_for_ledger(ledger_db: str, count: int, limit: float) -> tuple[Measured, float]:
    """Read the ledger until every accepted tip has an outcome (or ``limit`` seconds pass)."""
    conn = await asyncpg.connect(ledger_db)
    began = time.perf_counter()
    try:
        while True:
            measured = measure(await read_ledger_times(conn))
            done = measured.outcomes.total() - measured.outcomes[Outcome.PENDING]
            if done >= count or time.perf_counter() - began > limit:
                return measured, time.perf_counter() - began
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench pipeline")
    parser.add_argument("--tips", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rate", type=float, default=0, help="tips per second; 0 = no cap")
    parser.add_argument(
        "--duplicates", type=float, default=0.05, help="share of tips retelling an earlier one"
    )
    args = parser.parse_args(argv)
    load = generate_load(load_reference(REPO / "deploy" / "config"), args.tips, args.duplicates)

    with embedded_stack() as (settings, root), running_services(settings, root, LOAD_LIMITS):
        posted = asyncio.run(
            post_tips(settings.url_of("intake"), load, args.concurrency, args.rate)
        )
        assert settings.database_url is not None
        ledger_db = make_url(settings.database_url).set(database="whistle_ledger")
        measured, drained = asyncio.run(
            wait_for_ledger(
                ledger_db.render_as_string(hide_password=False), len(posted.tracking), 300
            )
        )

    report(args, posted.latencies, posted.elapsed, measured, drained)


def _spread(values: list[float]) -> str:
    if not values:
        return "–"
    ms = [v * 1000 for v in values]
    high = percentile(ms, 95) if len(ms) > 1 else ms[0]
    return f"{statistics.median(ms):.0f} / {high:.0f} / {max(ms):.0f} ms"


def report(
    args: argparse.Namespace,
    latencies: list[float],
    posting: float,
    measured: Measured,
    drained: float,
) -> None:
    ms = 1000
    rows = [
        (
            "tips posted",
            f"{len(latencies)}",
            f"concurrency {args.concurrency}"
            + (f", paced at {args.rate:g}/s" if args.rate else "")
            + f", {args.duplicates:.0%} retold; rate limits lifted for the bench client",
        ),
        ("intake accept rate", f"{len(latencies) / posting:.0f} tips/s", "201 after commit"),
        ("intake POST p50", f"{statistics.median(latencies) * ms:.1f} ms", ""),
        ("intake POST p95", f"{percentile(latencies, 95) * ms:.1f} ms", ""),
        ("intake POST p99", f"{percentile(latencies, 99) * ms:.1f} ms", ""),
    ]
    for outcome in Outcome:
        count = measured.outcomes[outcome]
        if outcome is Outcome.PENDING:
            rows.append((outcome.value, f"{count}", "after the drain limit"))
            continue
        rows.append(
            (
                outcome.value,
                f"{count}",
                "p50 / p95 / max " + _spread(measured.latencies.get(outcome, [])),
            )
        )
    rows.append(("drain after last POST", f"{drained:.1f} s", ""))
    print_table("Whistle pipeline benchmark", rows)
