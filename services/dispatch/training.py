"""``whistle triage evaluate`` and ``whistle triage train``: the county's labelled tips in
``deploy/config/triage/``, the figures on the held-out split, and the import of past tickets.

Training writes only text (``history.csv``); the running dispatch trains its model from the
same files when it reloads its reference data (``POST /v1/reference/reload`` or ``kill -HUP``),
so what was evaluated here is what it will use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reference.county import ReferenceData, load_reference
from services.dispatch.classifier import Example, TriageModel
from services.dispatch.corpus import (
    HISTORY,
    TRIAGE_DIR,
    Corpus,
    CorpusError,
    parse_labelled,
    read_corpus,
    write_labelled,
)
from services.dispatch.evaluation import Evaluation, evaluate


@dataclass(frozen=True)
class Trained:
    before: Evaluation
    after: Evaluation
    added: int  # history tips new to history.csv
    history: int  # history tips now in history.csv


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


def train(config_dir: Path, threshold: float, history: Path | None = None) -> Trained:
    """Evaluate the model in force, add ``history`` (a ``text,matter`` CSV of past tickets)
    to ``history.csv``, and evaluate the model trained with it; the file is written only when
    every row is valid (CorpusError lists those that are not)."""
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
    known = set(corpus.history)
    added = [e for e in dict.fromkeys(imported) if e not in known]
    combined = Corpus(corpus.train, corpus.held_out, [*corpus.history, *added], corpus.learned)
    after = evaluate(
        combined.held_out, reference, TriageModel(combined.training(), reference), threshold
    )
    if added:
        write_labelled(config_dir / TRIAGE_DIR / HISTORY, combined.history)
    return Trained(before, after, len(added), len(combined.history))
