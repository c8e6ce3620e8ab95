"""The triage model: which matter a tip in everyday words is about, learned from labelled tips.

Features are TF-IDF weights of the tip's words (the same jieba segmentation, with the
catalogue's keywords, that keyword triage uses) and of its character 1–2-grams, which catch
misspellings and words jieba does not know; a linear SVM (LinearSVC) separates the matters,
plus ``none`` for tips that are about no matter of the catalogue. The catalogue's own keywords
and item names are added as one example each, so the model also knows the list's words.

The SVM's scores are not probabilities. ``confidence`` is calibrated: a logistic regression
learns, from out-of-fold predictions on the training examples (5-fold cross-validation), how
often the best-scoring matter is right given its score and its lead over the next one. A
confidence of 0.8 means four times in five the matter was right on tips the model had not
seen. Training is deterministic (fixed folds; LinearSVC's solver is seeded) and takes about
half a second for the sample's thousand tips (bench/triage.py), so the model is trained from
text when dispatch loads its reference data and never stored as a pickle.

Pure: no files, no clock. The examples come from ``services.dispatch.corpus``.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn import config_context
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion
from sklearn.svm import LinearSVC

from reference.county import ReferenceData
from reference.segmentation import KeywordSegmenter, fold

# The label of a tip that is about no matter of the catalogue (咨询, 表扬, a family quarrel).
NONE = "none"
# Folds of the cross-validation the confidence is calibrated on; a matter needs this many
# examples to take part in every fold.
FOLDS = 5
SEED = 0
# Part of the model's version: a change to how the model is made changes the version too.
RECIPE = "words+chars1-2/tfidf/linearsvc-C1/platt-oof5"
# How many candidate matters a tip's explanation names.
CANDIDATES = 3
# How many of a tip's words or characters are named as the reason for a candidate.
WHY_FEATURES = 3
# How many texts' guesses a model keeps: a consumer's batch has its tips read together ahead
# of their handlers (``guesses_each``), and each handler's own call then finds its tip's.
REMEMBERED = 1024


@dataclass(frozen=True)
class Example:
    """A tip's words and the matter code (or NONE) a person gave it."""

    text: str
    matter: str


@dataclass(frozen=True)
class Guess:
    """One candidate matter for a tip: its calibrated confidence and the tip's words that
    weighed most for it."""

    matter: str
    confidence: float
    because: tuple[str, ...]


class _Tokens:
    """The segmenter's words of a folded text, as a TF-IDF analyzer (a class, not a lambda,
    so that the vectorizer stays a plain object)."""

    def __init__(self, segmenter: KeywordSegmenter) -> None:
        self._segmenter = segmenter

    def __call__(self, text: str) -> list[str]:
        return [w for w in self._segmenter.segment(text).tokens if w.strip()]


def _margins(scores: np.ndarray) -> np.ndarray:
    """Per row: the best score and its lead over the second, what the calibration reads."""
    ordered = np.sort(scores, axis=1)
    return np.column_stack([ordered[:, -1], ordered[:, -1] - ordered[:, -2]])


def model_version(examples: Sequence[Example], reference: ReferenceData) -> str:
    """A digest of the training examples (in order) and the reference data's version: the
    same examples over the same catalogue always make the same model."""
    digest = hashlib.sha256(f"{RECIPE}\0{reference.version}\0".encode())
    for example in examples:
        digest.update(example.matter.encode() + b"\t" + example.text.encode() + b"\n")
    return f"triage-{digest.hexdigest()[:12]}"


class TriageModel:
    """A trained model over one version of the reference data."""

    def __init__(self, examples: Sequence[Example], reference: ReferenceData) -> None:
        unknown = sorted({e.matter for e in examples} - set(reference.items) - {NONE})
        if unknown:
            raise ValueError(f"matters not in the catalogue: {', '.join(unknown)}")
        self.version = model_version(examples, reference)
        self.examples = len(examples)
        # Each keyword alone, and each item's name, is an example of its item: a tip in the
        # catalogue's own words is then the model's as well as the keywords' to recognise.
        catalogue = [
            Example(words, item.code)
            for item in reference.catalogue.items
            for words in (item.name, *(rule.word for rule in item.keywords))
        ]
        texts = [fold(e.text) for e in (*examples, *catalogue)]
        labels = np.array([e.matter for e in (*examples, *catalogue)])
        self._features = FeatureUnion(
            [
                (
                    "words",
                    TfidfVectorizer(analyzer=_Tokens(reference.segmenter), sublinear_tf=True),
                ),
                ("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 2), sublinear_tf=True)),
            ]
        )
        matrix = self._features.fit_transform(texts)
        self._svm = LinearSVC(C=1.0, random_state=SEED)
        # Every matter, even one with a single example, is scored; the calibration learns only
        # from the matters with enough examples to be held out in each fold.
        counts = Counter(labels.tolist())
        folded = np.array([counts[label] >= FOLDS for label in labels])
        # None when there are too few examples to calibrate on: then the model is never sure.
        self._calibration: LogisticRegression | None = None
        if len(set(labels[folded].tolist())) > 1:
            held_out = cross_val_predict(
                LinearSVC(C=1.0, random_state=SEED),
                matrix[folded],
                labels[folded],
                cv=StratifiedKFold(FOLDS, shuffle=True, random_state=SEED),
                method="decision_function",
            )
            classes = np.unique(labels[folded])
            right = classes[held_out.argmax(axis=1)] == labels[folded]
            if right.any() and not right.all():
                self._calibration = LogisticRegression().fit(_margins(held_out), right)
        self._svm.fit(matrix, labels)
        self._names = self._features.get_feature_names_out()
        self._remembered: OrderedDict[tuple[str, int], tuple[Guess, ...]] = OrderedDict()

    def guesses(self, text: str, top: int = CANDIDATES) -> tuple[Guess, ...]:
        """The ``top`` best matters (NONE among them) for a tip, best first. Each candidate's
        confidence is calibrated on its own score and its lead over the best of the others
        (a lead the runners-up do not have, so their confidence stays low)."""
        return self.guesses_each([text], top)[0]

    def guesses_each(self, texts: Sequence[str], top: int = CANDIDATES) -> list[tuple[Guess, ...]]:
        """:meth:`guesses` for each of ``texts``, those not read lately read in one pass:
        sklearn's per-call work, not the arithmetic, was most of dispatch's triage under load
        (1.4 ms for one tip alone, 0.3 ms each for twenty together: docs/benchmarks.md). A
        model never changes, so a text's guesses are remembered (the last ``REMEMBERED``)."""
        unread = [text for text in dict.fromkeys(texts) if (text, top) not in self._remembered]
        if unread:
            for text, guesses in zip(unread, self._read(unread, top), strict=True):
                self._remembered[(text, top)] = guesses
            while len(self._remembered) > REMEMBERED:
                self._remembered.popitem(last=False)
        for text in texts:
            self._remembered.move_to_end((text, top))
        return [self._remembered[(text, top)] for text in texts]

    def _read(self, texts: Sequence[str], top: int) -> list[tuple[Guess, ...]]:
        """The texts through the model together; the checks of inputs that are the model's own
        are skipped."""
        with config_context(assume_finite=True, skip_parameter_validation=True):
            rows = self._features.transform([fold(text) for text in texts]).tocsr()
            scores = self._svm.decision_function(rows)
            orders = np.argsort(-scores, axis=1, kind="stable")[:, :top]
            margins = np.array(
                [
                    [row[n], row[n] - np.delete(row, n).max()]
                    for row, order in zip(scores, orders, strict=True)
                    for n in order
                ]
            )
            confidences = (
                self._calibration.predict_proba(margins)[:, 1].reshape(orders.shape)
                if self._calibration
                else np.zeros(orders.shape)
            )
        guesses = []
        for i in range(len(texts)):
            # The text's features, sliced from the matrix's arrays: indexing a row of a sparse
            # matrix builds a new matrix each time.
            row = slice(rows.indptr[i], rows.indptr[i + 1])
            features, values = rows.indices[row], rows.data[row]
            guesses.append(
                tuple(
                    Guess(
                        str(self._svm.classes_[n]),
                        round(float(c), 3),
                        self._because(features, values, n),
                    )
                    for n, c in zip(orders[i], confidences[i], strict=True)
                )
            )
        return guesses

    def _because(self, features: np.ndarray, values: np.ndarray, n: int) -> tuple[str, ...]:
        """The tip's words (``features`` with their ``values``) that pushed most towards class
        ``n``, then its character pairs (a single character explains nothing to a dispatcher)."""
        weights = self._svm.coef_[n, features] * values
        named = [
            (not self._names[index].startswith("words__"), -weight, self._names[index])
            for weight, index in zip(weights, features, strict=True)
            if weight > 0
        ]
        found: list[str] = []
        for _, _, feature in sorted(named):
            name = feature.split("__", 1)[1]
            if len(name.strip()) > 1 and name not in found:
                found.append(name)
        return tuple(found[:WHY_FEATURES])
