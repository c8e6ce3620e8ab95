"""``python -m bench triage [--config-dir DIR] [--threshold T]``: the triage model on the
county's labelled tips (deploy/config/triage/).

Prints what it costs (training at load, classifying one tip), the held-out figures at the
threshold in force beside keywords alone, the same figures over a range of thresholds, and a
5-fold cross-validation over the training split: tips there were written independently of
one another, whereas many held-out tips were written beside a training tip of the same
matter, so the cross-validated figures are the soberer estimate of tips never seen.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sklearn.model_selection import StratifiedKFold

from reference.county import load_reference
from services.dispatch.classifier import SEED, TriageModel
from services.dispatch.corpus import read_corpus
from services.dispatch.evaluation import Tally, evaluate
from services.dispatch.triage import classify
from services.runtime.settings import Settings

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def _line(label: str, tally: Tally) -> str:
    return (
        f"{label:<28} right {tally.share('right'):6.1%}   manual {tally.share('manual'):6.1%}"
        f"   wrong {tally.share('wrong'):5.1%}   ({tally.total} tips)"
    )


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench triage")
    parser.add_argument("--config-dir", type=Path, default=Settings().config_dir)
    parser.add_argument(
        "--threshold",
        type=float,
        default=Settings.model_fields["triage_confidence_threshold"].default,
    )
    parser.add_argument("--runs", type=int, default=3, help="trainings timed (median)")
    args = parser.parse_args(argv)

    reference = load_reference(args.config_dir)
    reference.prepare()
    corpus = read_corpus(args.config_dir, reference)
    if corpus is None:
        raise SystemExit(f"no triage corpus under {args.config_dir}")
    training = corpus.training()

    timings, model = [], None
    for _ in range(max(1, args.runs)):
        started = time.perf_counter()
        model = TriageModel(training, reference)
        timings.append(time.perf_counter() - started)
    assert model is not None
    started = time.perf_counter()
    for example in corpus.held_out:
        classify(example.text, None, reference, model)
    per_tip = (time.perf_counter() - started) / len(corpus.held_out)
    print(
        f"triage model {model.version}: {len(training)} training tips, {len(reference.items)} items"
    )
    print(
        f"training (at load): median {statistics.median(timings):.2f} s of {len(timings)}; "
        f"classifying: {per_tip * 1000:.1f} ms a tip"
    )
    print()
    held_out = evaluate(corpus.held_out, reference, model, args.threshold)
    print(_line(f"held out, threshold {args.threshold:.2f}", held_out.overall))
    keywords = evaluate(corpus.held_out, reference, None, args.threshold)
    print(_line("held out, keywords alone", keywords.overall))
    for threshold in THRESHOLDS:
        sweep = evaluate(corpus.held_out, reference, model, threshold)
        print(_line(f"held out, threshold {threshold:.2f}", sweep.overall))

    cross = Tally()
    folds = StratifiedKFold(5, shuffle=True, random_state=SEED)
    matters = [e.matter for e in corpus.train]
    for trained_on, tested_on in folds.split(corpus.train, matters):
        fold_model = TriageModel([corpus.train[i] for i in trained_on], reference)
        fold = evaluate([corpus.train[i] for i in tested_on], reference, fold_model, args.threshold)
        for what in ("right", "manual", "wrong"):
            setattr(cross, what, getattr(cross, what) + getattr(fold.overall, what))
    print(_line(f"5-fold on train, thr. {args.threshold:.2f}", cross))
    print()
    print(held_out.render())
