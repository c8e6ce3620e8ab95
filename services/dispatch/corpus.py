"""The county's labelled tips, read from (and history written to) ``deploy/config/triage/``.

- ``corpus.csv`` — ``text,matter,split``: the sample tips, each ``train`` or ``heldout``. The
  split is fixed in the file: training never reads a held-out tip, so the held-out figures of
  ``whistle triage evaluate`` are measured on tips the model has not seen.
- ``history.csv`` — ``text,matter``: past tickets a county imports (``whistle triage train
  --history``).
- ``learned.csv`` — ``text,matter``: dispatchers' classifications from the console.

A matter is a catalogue item's code or ``none``. A history or learned tip whose words are
those of a held-out tip is left out of training, so the held-out split stays unseen.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from reference.county import ReferenceData
from services.dispatch.classifier import NONE, Example, TriageModel, model_version

TRIAGE_DIR = "triage"
CORPUS = "corpus.csv"
HISTORY = "history.csv"
LEARNED = "learned.csv"
TRAIN, HELD_OUT = "train", "heldout"
# Models trained in this process, by version (a digest of their examples and reference data):
# a reload whose corpus and catalogue did not change, or a second service instance in one
# process (the test suite starts dozens), takes the model already trained (~1 s of CPU) —
# the same examples over the same catalogue make the same model.
TRAINED_KEPT = 4
_trained: dict[str, TriageModel] = {}


class CorpusError(Exception):
    """The labelled tips are invalid; ``reasons`` lists every problem found."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


@dataclass(frozen=True)
class Corpus:
    train: list[Example]
    held_out: list[Example]
    history: list[Example] = field(default_factory=list)
    learned: list[Example] = field(default_factory=list)

    def training(self) -> list[Example]:
        """What the model learns from: the train split, history and learned tips, without any
        tip whose words are a held-out tip's."""
        unseen = {e.text.strip() for e in self.held_out}
        extra = [e for e in (*self.history, *self.learned) if e.text.strip() not in unseen]
        return [*self.train, *extra]


def parse_labelled(
    text: str, name: str, reference: ReferenceData, *, split: bool
) -> tuple[list[Example], list[Example], list[str]]:
    """The rows of a labelled CSV (``text,matter`` and, with ``split``, ``split``): the train
    (or only) rows, the held-out rows, and every problem found."""
    reader = csv.DictReader(io.StringIO(text))
    wanted = {"text", "matter", *(["split"] if split else [])}
    missing = wanted - set(reader.fieldnames or ())
    if missing:
        return [], [], [f"{name}: missing column(s) {', '.join(sorted(missing))}"]
    train: list[Example] = []
    held_out: list[Example] = []
    reasons: list[str] = []
    for line, row in enumerate(reader, start=2):
        words, matter = (row["text"] or "").strip(), (row["matter"] or "").strip()
        if not words:
            reasons.append(f"{name}:{line}: empty text")
        elif matter != NONE and matter not in reference.items:
            reasons.append(f"{name}:{line}: matter {matter!r} is not in the catalogue")
        elif split and row["split"] not in (TRAIN, HELD_OUT):
            reasons.append(f"{name}:{line}: split must be {TRAIN} or {HELD_OUT}")
        else:
            wanted_list = held_out if split and row["split"] == HELD_OUT else train
            wanted_list.append(Example(words, matter))
    return train, held_out, reasons


def read_corpus(config_dir: Path, reference: ReferenceData) -> Corpus | None:
    """The labelled tips under ``config_dir/triage``; None when the county has no corpus."""
    directory = config_dir / TRIAGE_DIR
    if not (directory / CORPUS).exists():
        return None
    reasons: list[str] = []

    def read(name: str, split: bool) -> tuple[list[Example], list[Example]]:
        path = directory / name
        if not path.exists():
            return [], []
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            reasons.append(f"{TRIAGE_DIR}/{name}: cannot read ({exc})")
            return [], []
        train, held_out, found = parse_labelled(
            text, f"{TRIAGE_DIR}/{name}", reference, split=split
        )
        reasons.extend(found)
        return train, held_out

    train, held_out = read(CORPUS, True)
    history, _ = read(HISTORY, False)
    learned, _ = read(LEARNED, False)
    if reasons:
        raise CorpusError(reasons)
    return Corpus(train, held_out, history, learned)


def load_model(config_dir: Path, reference: ReferenceData) -> TriageModel | None:
    """The model trained from the county's labelled tips, or None (keywords only)."""
    corpus = read_corpus(config_dir, reference)
    if corpus is None:
        return None
    examples = corpus.training()
    version = model_version(examples, reference)
    model = _trained.pop(version, None) or TriageModel(examples, reference)
    _trained[version] = model  # the most recent last
    while len(_trained) > TRAINED_KEPT:
        del _trained[next(iter(_trained))]
    return model


def write_labelled(path: Path, examples: list[Example]) -> None:
    """Write ``text,matter`` rows, replacing the file in one step."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["text", "matter"])
    writer.writerows((e.text, e.matter) for e in examples)
    partial = path.with_suffix(".partial")
    partial.write_text(buffer.getvalue(), encoding="utf-8")
    partial.replace(path)
