"""``whistle triage evaluate`` and ``whistle triage train``: the county's labelled tips in
``deploy/config/triage/``, the figures on the held-out split, and the import of past tickets.

Dispatchers' classifications (``triage_label``, one row each time a person gave a tip its
matter) are exported to ``learned.csv``, the latest per tip. Training writes only text
(``history.csv``, ``learned.csv``); the running dispatch trains its model from the
same files when it reloads its reference data (``POST /v1/reference/reload`` or ``kill -HUP``),
so what was evaluated here is what it will use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from reference.county import ReferenceData, load_reference
from services.dispatch.classifier import Example, TriageModel
from services.dispatch.corpus import (
    HISTORY,
    LEARNED,
    TRIAGE_DIR,
    Corpus,
    CorpusError,
    parse_labelled,
    read_corpus,
    write_labelled,
)
from services.dispatch.evaluation import Evaluation, evaluate
from services.dispatch.models import TriageLabel


@dataclass(frozen=True)
class Trained:
    before: Evaluation
    after: Evaluation
    added: int  # history tips new to history.csv
    history: int  # history tips now in history.csv
    learned: int | None  # dispatchers' classifications now in learned.csv (None: not read)


async def labelled_by_dispatchers(session: AsyncSession) -> list[Example]:
    """Each tip a dispatcher gave a matter by hand, with the latest matter given, oldest
    first (a tip classified, then reassigned, is learned as reassigned)."""
    rows = await session.scalars(
        select(TriageLabel).order_by(TriageLabel.labelled_at, TriageLabel.id)  # type: ignore[arg-type]
    )
    latest = {row.tip_id: Example(row.text, row.matter_code) for row in rows}
    return list(latest.values())


def _loaded(config_dir: Path) -> tuple[ReferenceData, Corpus]:
    reference = load_reference(config_dir)
    corpus = read_corpus(config_dir, reference)
    if corpus is None:
        raise CorpusError([f"{TRIAGE_DIR}/corpus.csv: not found under {config_dir}"])
    return reference, corpus


def evaluate_corpus(config_dir: Path, threshold: float) -> Evaluation:
    """The model dispatch would train now, on the held-out split."""
    reference, corpus = _loaded(config_dir)
    model = TriageModel(corpus.training(), reference)
    return evaluate(corpus.held_out, reference, model, threshold)


def train(
    config_dir: Path,
    threshold: float,
    history: Path | None = None,
    learned: list[Example] | None = None,
) -> Trained:
    """Evaluate the model in force, add ``history`` (a ``text,matter`` CSV of past tickets)
    to ``history.csv``, replace ``learned.csv`` with ``learned`` (dispatchers'
    classifications), and evaluate the model trained with them; the files are written only
    when every row is valid (CorpusError lists those that are not)."""
    reference, corpus = _loaded(config_dir)
    before = evaluate(
        corpus.held_out, reference, TriageModel(corpus.training(), reference), threshold
    )
    imported: list[Example] = []
    if history is not None:
        try:
            text = history.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError([f"{history}: cannot read ({exc})"]) from exc
        imported, _, reasons = parse_labelled(text, str(history), reference, split=False)
        if reasons:
            raise CorpusError(reasons)
    # A matter the catalogue dropped since a dispatcher chose it is not learned.
    learned = None if learned is None else [e for e in learned if e.matter in reference.items]
    known = set(corpus.history)
    added = [e for e in dict.fromkeys(imported) if e not in known]
    combined = Corpus(
        corpus.train,
        corpus.held_out,
        [*corpus.history, *added],
        corpus.learned if learned is None else learned,
    )
    after = evaluate(
        combined.held_out, reference, TriageModel(combined.training(), reference), threshold
    )
    if added:
        write_labelled(config_dir / TRIAGE_DIR / HISTORY, combined.history)
    if learned is not None:
        write_labelled(config_dir / TRIAGE_DIR / LEARNED, learned)
    return Trained(
        before, after, len(added), len(combined.history), None if learned is None else len(learned)
    )
