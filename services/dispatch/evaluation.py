"""How well triage does on held-out tips: right, sent to a dispatcher, wrongly assigned.

A tip about a matter is *right* when triage assigns it to that matter with a confidence at
or above the threshold, *manual* when it goes to a dispatcher, *wrong* when it is assigned to
another matter. A tip about no matter (``none``) is right when it goes to a dispatcher and
wrong when it is assigned to any matter. Pure: the classifications are computed with
:func:`services.dispatch.triage.classify`, exactly as dispatch does for a tip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from reference.county import ReferenceData
from services.dispatch.classifier import NONE, Example, TriageModel
from services.dispatch.triage import Classification, classify

Outcome = Literal["right", "manual", "wrong"]


def outcome(classification: Classification, matter: str, threshold: float) -> Outcome:
    """What became of a tip whose true matter is ``matter`` (a code or NONE)."""
    item = classification.item
    if item is None or classification.confidence < threshold:
        return "right" if matter == NONE else "manual"
    return "right" if item.code == matter else "wrong"


@dataclass
class Tally:
    right: int = 0
    manual: int = 0
    wrong: int = 0

    @property
    def total(self) -> int:
        return self.right + self.manual + self.wrong

    def share(self, what: Outcome) -> float:
        return getattr(self, what) / self.total if self.total else 0.0

    def add(self, what: Outcome) -> None:
        setattr(self, what, getattr(self, what) + 1)


@dataclass
class Evaluation:
    threshold: float
    model_version: str | None
    overall: Tally = field(default_factory=Tally)
    per_matter: dict[str, Tally] = field(default_factory=dict)
    # Of the tips about a matter sent to a dispatcher, how many had it among the candidates.
    manual_with_candidate: int = 0
    wrong_tips: list[tuple[str, str, str]] = field(default_factory=list)  # text, true, given

    def render(self) -> str:
        """The figures as an operator reads them (Chinese), worst matters first."""
        o = self.overall
        lines = [
            f"分类模型 {self.model_version or '无（仅关键词）'}，阈值 {self.threshold:.2f}，"
            f"留出集 {o.total} 条",
            f"正确 {o.right}（{o.share('right'):.1%}）  "
            f"转人工 {o.manual}（{o.share('manual'):.1%}）  "
            f"错派 {o.wrong}（{o.share('wrong'):.1%}）",
            f"转人工的 {o.manual} 条中，{self.manual_with_candidate} 条的正确事项在前三候选之内",
            "各事项（正确/转人工/错派/合计）：",
        ]
        ordered = sorted(self.per_matter.items(), key=lambda kv: (kv[1].share("right"), kv[0]))
        lines += [f"  {code:<8} {t.right}/{t.manual}/{t.wrong}/{t.total}" for code, t in ordered]
        if self.wrong_tips:
            lines.append("错派的留出样本：")
            lines += [
                f"  {text} —— 应为 {true}，派给 {given}" for text, true, given in self.wrong_tips
            ]
        return "\n".join(lines)


def evaluate(
    held_out: Sequence[Example],
    reference: ReferenceData,
    model: TriageModel | None,
    threshold: float,
) -> Evaluation:
    """Classify every held-out tip as dispatch would and count what became of it."""
    evaluation = Evaluation(threshold, model.version if model else None)
    for example in held_out:
        classification = classify(example.text, None, reference, model)
        what = outcome(classification, example.matter, threshold)
        evaluation.overall.add(what)
        evaluation.per_matter.setdefault(example.matter, Tally()).add(what)
        if what == "manual" and any(
            c.startswith(f"{example.matter} ") for c in classification.candidates
        ):
            evaluation.manual_with_candidate += 1
        if what == "wrong":
            given = classification.item.code if classification.item else NONE
            evaluation.wrong_tips.append((example.text, example.matter, given))
    return evaluation
