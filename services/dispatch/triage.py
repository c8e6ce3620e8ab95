"""Triage: which matter a tip is about, and where it happened.

Plain functions over the reference data; no I/O. Each result carries the reasons it was
reached, which travel into the case's events, the console and the ledger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol

from reference.county import MatterItem, ReferenceData, Urgency
from reference.segmentation import Found, fold
from services.dispatch.classifier import NONE, Guess, TriageModel

# Keyword weight at which a single item's match counts as fully confident on its own.
CONFIDENT_SCORE = 2.0

# A tip about several problems ("占道经营还噪音扰民") is read clause by clause too: a clause is
# what lies between punctuation, spaces and the words citizens join problems with.
CLAUSE_BREAK = re.compile(r"[，。；！？、,.;!?\s]+|还有|而且|并且|另外|同时|还")
# A clause shorter than this says too little to name a matter on its own.
MIN_CLAUSE = 4
# A matter counts as seen in a clause when the clause alone reaches this confidence: higher
# than the routing threshold, so that a fragment does not invent a second problem.
SEEN_CONFIDENCE = 0.8

# A point outside every grid still belongs to the nearest grid up to this far away (GPS error,
# a grid drawn a little short of the road); farther away it locates nothing.
NEAREST_GRID_MAX_METRES = 500.0


@dataclass(frozen=True)
class Classification:
    item: MatterItem | None
    confidence: float
    explanation: tuple[str, ...]
    # The model's best matters, each with its confidence and the words behind it (Chinese),
    # for the dispatcher who decides when the confidence is too low.
    candidates: tuple[str, ...] = ()


@dataclass(frozen=True)
class Location:
    township: str | None
    village: str | None
    grid: str | None
    explanation: tuple[str, ...]


@dataclass(frozen=True)
class Triaged:
    """What triage made of a tip: its matter and its place."""

    classification: Classification
    location: Location


class LatLon(Protocol):
    """A WGS 84 point, such as the ``GeoPoint`` of a ``TipReceived``."""

    @property
    def lat(self) -> float: ...

    @property
    def lon(self) -> float: ...


def classify(
    text: str,
    category_hint: str | None,
    reference: ReferenceData,
    model: TriageModel | None = None,
) -> Classification:
    """The channel's category hint wins when it names an item; otherwise weighted keywords
    found as words of the tip's segmentation (jieba, with the catalogue's keywords added),
    combined with the trained model when there is one (:func:`combine`)."""
    hinted = _by_hint(category_hint, reference)
    if hinted is not None:
        return hinted
    by_keywords = _by_keywords(text, reference)
    if model is None:
        return by_keywords
    clauses = _clauses(text)
    guesses, *of_clauses = model.guesses_each([text, *clauses])
    whole = combine(by_keywords, guesses, model.version, reference)
    if not clauses:
        return whole
    # A clause read alone is easily over-read ("还在冰柜里卖" sounds like 私售汽油): a matter
    # it names counts only if the whole tip's reading has it among its candidates too.
    plausible = {g.matter for g in guesses} | (
        {by_keywords.item.code} if by_keywords.item else set()
    )
    seen: dict[str, tuple[float, str, MatterItem]] = {}  # code → confidence, clause, item
    for clause, clause_guesses in zip(clauses, of_clauses, strict=True):
        found = combine(_by_keywords(clause, reference), clause_guesses, "", reference)
        if (
            found.item is not None
            and found.item.code in plausible
            and found.confidence >= SEEN_CONFIDENCE
        ):
            best = seen.get(found.item.code)
            if best is None or found.confidence > best[0]:
                seen[found.item.code] = (found.confidence, clause, found.item)
    return several_matters(whole, list(seen.values()))


def model_texts(text: str, category_hint: str | None, reference: ReferenceData) -> list[str]:
    """What :func:`classify` gives the trained model to read for a tip: the tip and, if it
    has several, its clauses; nothing when the channel's hint names the matter."""
    if _by_hint(category_hint, reference) is not None:
        return []
    return [text, *_clauses(text)]


def _by_hint(category_hint: str | None, reference: ReferenceData) -> Classification | None:
    """The item the channel's category hint names, if it names one."""
    if category_hint:
        for item in reference.catalogue.items:
            if category_hint in (item.code, item.open311_service_code):
                return Classification(
                    item, 1.0, (f"渠道分类 {category_hint!r} 对应事项 {item.code} {item.name}",)
                )
    return None


def _clauses(text: str) -> list[str]:
    """The tip's clauses, when it has two or more that say enough to be read alone."""
    clauses = [c for c in CLAUSE_BREAK.split(text) if len(c) >= MIN_CLAUSE]
    return clauses if len(clauses) >= 2 else []


def several_matters(
    whole: Classification, seen: list[tuple[float, str, MatterItem]]
) -> Classification:
    """The tip read whole, or — when its clauses name two matters or more with confidence —
    the primary among them (an emergency by the catalogue's default urgency, else the matter
    the whole tip reads as, else the surer clause), at the confidence of its clause (or of the
    whole tip, if surer), with the others named."""
    known = {item.code for _, _, item in seen}
    if (
        whole.item is not None
        and whole.item.code not in known
        and whole.confidence >= SEEN_CONFIDENCE
    ):
        seen.append((whole.confidence, "", whole.item))
    if len({item.code for _, _, item in seen}) < 2:
        return whole
    read_whole = whole.item.code if whole.item else None
    ranked = sorted(
        seen,
        key=lambda s: (
            # An emergency first (a gas leak before the stall beside it); the other default
            # urgencies are deadline classes, not importance, and do not decide.
            s[2].default_urgency is not Urgency.EMERGENCY,
            s[2].code != read_whole,
            -s[0],
            s[2].code,
        ),
    )
    confidence, _, primary = ranked[0]
    if whole.item is not None and whole.item.code == primary.code:
        confidence = max(confidence, whole.confidence)
    others = "；".join(
        f"{item.code} {item.name}（“{said}”，置信度 {conf:.2f}）" for conf, said, item in ranked[1:]
    )
    line = (
        f"一诉多事：主办事项 {primary.code} {primary.name}"
        f"（紧急事项优先，否则按整体识别），另见 {others}"
    )
    return replace(
        whole,
        item=primary,
        confidence=round(confidence, 3),
        explanation=(*whole.explanation, line),
    )


def _by_keywords(text: str, reference: ReferenceData) -> Classification:
    scored, passed_over = rank(text, reference)
    not_counted = [f"{word}（分词为 {words}）" for word, words in sorted(passed_over.items())]
    if not scored:
        explanation = ["未命中事项清单关键词"]
        if not_counted:
            explanation.append(f"不计入：{'、'.join(not_counted)}")
        return Classification(None, 0.0, tuple(explanation))
    best_score, best, words = scored[0]
    runner_up = scored[1][0] if len(scored) > 1 else 0.0
    # Confident when the match is strong on its own and clearly ahead of the next item.
    confidence = min(1.0, best_score / CONFIDENT_SCORE) * (best_score / (best_score + runner_up))
    explanation = [
        f"关键词 {'、'.join(words)} → 事项 {best.code} {best.name}（得分 {best_score:g}）"
    ]
    if runner_up:
        second = scored[1][1]
        explanation.append(f"次选 {second.code} {second.name}（得分 {runner_up:g}）")
    if not_counted:
        explanation.append(f"不计入：{'、'.join(not_counted)}")
    return Classification(best, round(confidence, 3), tuple(explanation))


def _named(guess: Guess, reference: ReferenceData) -> str:
    item = reference.items.get(guess.matter)
    what = f"{item.code} {item.name}" if item else "不属于清单事项"
    why = f"，依据 {'、'.join(guess.because)}" if guess.because else ""
    return f"{what}（置信度 {guess.confidence:.2f}{why}）"


def combine(
    by_keywords: Classification,
    guesses: tuple[Guess, ...],
    model_version: str,
    reference: ReferenceData,
) -> Classification:
    """The keywords' and the model's verdicts as one. When they name the same matter, either
    being sure is enough: 1 − (1 − a)(1 − b). When they differ, the surer one's matter is
    taken, its confidence discounted by the other's (a·(1 − b)): a tip whose words point two
    ways goes to a dispatcher unless one side is nearly certain and the other nearly blank
    ("摆摊" is the catalogue's word for 占道经营, yet someone 摆摊给人拔牙 is practising
    medicine without a licence)."""
    top = guesses[0]
    by_model = reference.items.get(top.matter) if top.matter != NONE else None
    kw_item, kw = by_keywords.item, by_keywords.confidence
    model_line = f"分类模型 {model_version}：{_named(top, reference)}"
    if kw_item is None:
        item, confidence = by_model, top.confidence
    elif by_model is not None and by_model.code == kw_item.code:
        item, confidence = kw_item, 1 - (1 - kw) * (1 - top.confidence)
    elif kw >= top.confidence:
        item, confidence = kw_item, kw * (1 - top.confidence)
    else:
        item, confidence = by_model, top.confidence * (1 - kw)
    explanation = [*by_keywords.explanation, model_line]
    if kw_item is not None and (by_model is None or by_model.code != kw_item.code):
        kept = "以关键词为准" if item is kw_item else "以分类模型为准"
        explanation.append(f"关键词与分类模型结论不一致，{kept}，置信度按另一方下调")
    if item is None:
        confidence = 0.0
    candidates = tuple(_named(g, reference) for g in guesses)
    explanation.append(f"候选事项：{'；'.join(candidates)}")
    return Classification(item, round(confidence, 3), tuple(explanation), candidates)


def rank(
    text: str, reference: ReferenceData
) -> tuple[list[tuple[float, MatterItem, list[str]]], dict[str, str]]:
    """Every item whose keywords are words of the text, best first, as (score, item, the
    words found); and the keywords passed over because their characters were found only
    inside other words (keyword → those words). The console shows the first few."""
    segmenter, index = reference.segmenter, reference.keyword_index
    items = reference.catalogue.items
    segmented = segmenter.segment(fold(text))
    counted: dict[int, list[int]] = {}  # item position → positions of its keywords counted
    inside: list[tuple[int, int, str]] = []  # item and keyword position, the words around it
    # Each keyword occurring in the text is judged once, for every item that lists it.
    for word in index.occurring(segmented.text):
        found, at = segmenter.find(segmented, word)
        if found in (Found.WHOLE, Found.SPLIT):
            for n, k in index.uses[word]:
                counted.setdefault(n, []).append(k)
        elif found is Found.INSIDE:
            around = segmented.words_around(at, at + len(word))
            inside.extend((n, k, around) for n, k in index.uses[word])
    scored: list[tuple[float, MatterItem, list[str]]] = []
    # In catalogue order, and each item's keywords in its own order, as a scan of the whole
    # catalogue lists them: the same words, the same float sums, ties broken the same way.
    for n in sorted(counted):
        hits = [items[n].keywords[k] for k in sorted(counted[n])]
        scored.append((sum(rule.weight for rule in hits), items[n], [rule.word for rule in hits]))
    scored.sort(key=lambda entry: (-entry[0], entry[1].code))
    passed_over = {items[n].keywords[k].word: around for n, k, around in sorted(inside)}
    return scored, passed_over


def locate(
    grid_id: str | None,
    address: str | None,
    reference: ReferenceData,
    point: LatLon | None = None,
) -> Location:
    """Grid id → village → township; else the grid polygon containing the point (or the
    nearest within NEAREST_GRID_MAX_METRES); else a township named in the address; else
    nowhere. The explanation also says why each earlier way did not decide."""
    passed: list[str] = []
    if grid_id:
        found = reference.grids.get(grid_id)
        if found:
            township, village, grid = found
            return Location(
                township.code,
                village.code,
                grid.id,
                (f"网格 {grid.id} 属于 {township.name}{village.name}",),
            )
        passed.append(f"网格 {grid_id!r} 不存在")
    if point is not None:
        where = f"坐标 ({point.lat:.6f}, {point.lon:.6f})"
        hit = reference.grid_locator.locate(point.lat, point.lon)
        if hit is None:
            passed.append(f"{where}：参考数据中没有网格边界")
        elif hit.distance_m <= NEAREST_GRID_MAX_METRES:
            township, village, grid = reference.grids[hit.grid_id]
            if hit.distance_m == 0 and not hit.also:
                how = f"{where} 位于网格 {grid.id}"
            elif hit.distance_m == 0:
                shared = "、".join((grid.id, *hit.also))
                how = f"{where} 位于网格 {shared} 的交界上，按网格编号取 {grid.id}"
            else:
                how = (
                    f"{where} 不在任何网格内，距最近的网格 {grid.id} 约 {hit.distance_m:.0f} 米"
                    f"（{NEAREST_GRID_MAX_METRES:.0f} 米以内），按最近网格归属"
                )
            return Location(
                township.code,
                village.code,
                grid.id,
                (*passed, f"{how}，属于 {township.name}{village.name}"),
            )
        else:
            passed.append(
                f"{where} 不在任何网格内，距最近的网格 {hit.grid_id} 约 {hit.distance_m:.0f} 米，"
                f"超过 {NEAREST_GRID_MAX_METRES:.0f} 米"
            )
    if address:
        for township in reference.county.townships:
            if township.name in address:
                village = next((v for v in township.villages if v.name in address), None)
                return Location(
                    township.code,
                    village.code if village else None,
                    None,
                    (*passed, f"地址中含 {township.name}{village.name if village else ''}"),
                )
        passed.append("无法从地址确定乡镇")
    if not passed:
        passed.append("未提供网格、坐标或地址，无法确定乡镇")
    return Location(None, None, None, tuple(passed))
