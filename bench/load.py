"""The citizens of the benchmarks: distinct tips over the catalogue and every grid, some retold,
and the clients that post them to intake (or to a ceiling's endpoint) as an app would."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from reference.county import ReferenceData


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
    url: str | Sequence[str],
    load: Sequence[LoadTip],
    concurrency: int,
    rate: float = 0,
    *,
    retry_for: float = 0,
    retry_statuses: frozenset[int] = RETRIED_STATUSES,
    on_accepted: Callable[[int], None] | None = None,
    posted: Posted | None = None,
) -> Posted:
    """Post the ``load`` from ``concurrency`` clients, at most ``rate`` a second (0: no cap);
    given several ``url``s (an intake's replicas), client i posts to the i-th in turn.

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

    urls = [url] if isinstance(url, str) else list(url)

    async def post(client: httpx.AsyncClient, url: str, n: int) -> None:
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

    async def worker(client: httpx.AsyncClient, url: str) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            if rate:
                await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            await post(client, url, n)

    async with httpx.AsyncClient(timeout=30) as client:
        await asyncio.gather(*(worker(client, urls[i % len(urls)]) for i in range(concurrency)))
    return posted


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return max(0.0, float(response.headers["retry-after"]))
    except (KeyError, ValueError):
        return default
