"""Triage: which matter a tip is about, and where it happened.

Plain functions over the reference data; no I/O. Each result carries the reasons it was
reached, which travel into the case's events, the console and the ledger.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from services.dispatch.reference import MatterItem, ReferenceData

# Keyword weight at which a single item's match counts as fully confident on its own.
CONFIDENT_SCORE = 2.0


@dataclass(frozen=True)
class Classification:
    item: MatterItem | None
    confidence: float
    explanation: tuple[str, ...]


@dataclass(frozen=True)
class Location:
    township: str | None
    village: str | None
    grid: str | None
    explanation: tuple[str, ...]


def classify(text: str, category_hint: str | None, reference: ReferenceData) -> Classification:
    """The channel's category hint wins when it names an item; otherwise weighted keywords."""
    if category_hint:
        for item in reference.catalogue.items:
            if category_hint in (item.code, item.open311_service_code):
                return Classification(
                    item, 1.0, (f"渠道分类 {category_hint!r} 对应事项 {item.code} {item.name}",)
                )
    scored: list[tuple[float, MatterItem, list[str]]] = []
    folded = _fold(text)
    for item in reference.catalogue.items:
        hits = [rule for rule in item.keywords if _fold(rule.word) in folded]
        if hits:
            score = sum(rule.weight for rule in hits)
            scored.append((score, item, [rule.word for rule in hits]))
    if not scored:
        return Classification(None, 0.0, ("未命中事项清单关键词",))
    scored.sort(key=lambda entry: (-entry[0], entry[1].code))
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
    return Classification(best, round(confidence, 3), tuple(explanation))


def _fold(text: str) -> str:
    """Full-width ＫＴＶ and lower-case ktv both match the keyword KTV."""
    return unicodedata.normalize("NFKC", text).casefold()


def locate(grid_id: str | None, address: str | None, reference: ReferenceData) -> Location:
    """Grid id → village → township; else a township named in the address; else nowhere."""
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
    if address:
        for township in reference.county.townships:
            if township.name in address:
                village = next((v for v in township.villages if v.name in address), None)
                return Location(
                    township.code,
                    village.code if village else None,
                    None,
                    (f"地址中含 {township.name}{village.name if village else ''}",),
                )
    reason = f"网格 {grid_id!r} 不存在" if grid_id else "无法从地址确定乡镇"
    return Location(None, None, None, (reason,))
