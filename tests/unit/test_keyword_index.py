"""Triage's keyword index ranks exactly as checking every keyword of every item would."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from bench.routing import CLOSERS, MISSES, OPENERS, PLACES, generate, tips
from reference.county import MatterItem, ReferenceData, load_reference
from reference.segmentation import Found, KeywordIndex, fold
from services.dispatch.triage import classify, rank

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config"

Ranking = tuple[list[tuple[float, MatterItem, list[str]]], dict[str, str]]


def scan_every_keyword(text: str, reference: ReferenceData, kinds: Counter[Found]) -> Ranking:
    """The straightforward ranking: every keyword of every item, in catalogue order, checked
    against the tip's segmentation on its own (counting how each was found in ``kinds``)."""
    segmenter = reference.segmenter
    segmented = segmenter.segment(fold(text))
    scored: list[tuple[float, MatterItem, list[str]]] = []
    passed_over: dict[str, str] = {}
    for item in reference.catalogue.items:
        hits = []
        for rule in item.keywords:
            word = fold(rule.word)
            found, at = segmenter.find(segmented, word)
            kinds[found] += 1
            if found in (Found.WHOLE, Found.SPLIT):
                hits.append(rule)
            elif found is Found.INSIDE:
                passed_over[rule.word] = segmented.words_around(at, at + len(word))
        if hits:
            scored.append((sum(r.weight for r in hits), item, [r.word for r in hits]))
    scored.sort(key=lambda entry: (-entry[0], entry[1].code))
    return scored, passed_over


def assert_same_ranking(texts: list[str], reference: ReferenceData) -> Counter[Found]:
    kinds: Counter[Found] = Counter()
    for text in texts:
        expected_scored, expected_passed = scan_every_keyword(text, reference, kinds)
        scored, passed = rank(text, reference)
        # Item identity, float scores bit for bit, words in the catalogue's order.
        assert [(s, i.code, w) for s, i, w in scored] == [
            (s, i.code, w) for s, i, w in expected_scored
        ], text
        assert all(a is b for (_, a, _), (_, b, _) in zip(scored, expected_scored, strict=True))
        # Passed-over keywords, in the same order (the console lists them as given).
        assert list(passed.items()) == list(expected_passed.items()), text
    return kinds


@pytest.fixture(scope="module")
def sample() -> ReferenceData:
    reference = load_reference(CONFIG)
    reference.prepare()
    return reference


def sample_texts(reference: ReferenceData, count: int, seed: int) -> list[str]:
    """Keywords whole, keywords cut short or run into each other, characters of keywords
    shuffled into new words, half-width and full-width Latin, between a citizen's phrases."""
    rng = random.Random(seed)
    words = [rule.word for item in reference.catalogue.items for rule in item.keywords]
    characters = "".join(words) + "的了有人在村里镇上我们加班车童工作站改变质量，。 ＫＴＶktv"
    fillers = [*PLACES, *MISSES, *OPENERS, *CLOSERS]
    texts = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 6)):
            roll = rng.random()
            if roll < 0.35:
                parts.append(rng.choice(words))
            elif roll < 0.5:
                word = rng.choice(words)
                parts.append(word[rng.randrange(len(word)) :] or word)
            elif roll < 0.65:  # a keyword run into the characters around it
                parts.append(rng.choice(characters) + rng.choice(words) + rng.choice(characters))
            elif roll < 0.85:
                parts.append("".join(rng.choice(characters) for _ in range(rng.randint(1, 6))))
            else:
                parts.append(rng.choice(fillers))
        text = "".join(parts)
        texts.append(text.upper() if rng.random() < 0.1 else text)
    return texts


def test_the_index_ranks_as_the_full_scan_on_the_sample_catalogue(sample: ReferenceData) -> None:
    known = ["有人大货车天天从村里过", "春节期间希望公交公司增加班车", "希望饭店改变质量差的老问题"]
    kinds = assert_same_ranking(known + sample_texts(sample, 1000, seed=7), sample)
    # The texts reach every way a keyword can be found, so every branch was compared.
    assert set(kinds) == set(Found), kinds
    assert kinds[Found.SPLIT] >= 10 and kinds[Found.INSIDE] >= 100, kinds


def test_the_index_ranks_as_the_full_scan_on_a_generated_catalogue(tmp_path: Path) -> None:
    # The benchmark's catalogue: 300 items sharing short keywords ("过期", "奶粉") by the dozen.
    generate(townships=3, items=300, seed=1).write(tmp_path)
    reference = load_reference(tmp_path)
    reference.prepare()
    texts = [tip.text for tip in tips(reference, 400, seed=3)]
    texts += sample_texts(reference, 200, seed=5)
    kinds = assert_same_ranking(texts, reference)
    assert kinds[Found.WHOLE] >= 1000 and kinds[Found.INSIDE] >= 1000, kinds
    assert kinds[Found.SPLIT] >= 20, kinds


def test_classification_explains_passed_over_keywords_in_order(sample: ReferenceData) -> None:
    # Two keywords hidden inside other words: both listed, sorted, with their segmentation.
    result = classify("春节期间增加班车，社区儿童工作站也开门", None, sample)
    not_counted = [line for line in result.explanation if line.startswith("不计入")]
    assert not_counted == ["不计入：加班（分词为 增加/班车）、童工（分词为 儿童/工作站）"]


def test_full_width_and_upper_case_text_finds_the_same_keywords(sample: ReferenceData) -> None:
    plain, _ = rank("镇上的ktv超时营业", sample)
    wide, _ = rank("镇上的ＫＴＶ超时营业", sample)
    assert plain and [(s, i.code, w) for s, i, w in plain] == [(s, i.code, w) for s, i, w in wide]


def test_the_index_folds_each_keyword_once_and_knows_every_use() -> None:
    index = KeywordIndex([["KTV", "歌厅"], ["ｋｔｖ", ""], ["超时营业", "KTV"]])
    assert dict(index.uses) == {
        "ktv": ((0, 0), (1, 0), (2, 1)),
        "歌厅": ((0, 1),),
        "超时营业": ((2, 0),),
    }
    # Overlapping and repeated occurrences, inside other words too; each keyword once.
    assert index.occurring("ktv超时营业ktv歌厅") == {"ktv", "超时营业", "歌厅"}
    assert index.occurring("超时营") == set()
    assert index.occurring("") == set()


def test_the_index_is_built_once_per_reference_version(sample: ReferenceData) -> None:
    assert sample.keyword_index is sample.keyword_index
    other = load_reference(CONFIG)
    assert other.keyword_index is not sample.keyword_index
    # The segmenter's dictionary takes the keywords already folded by the index.
    assert "ktv" in other.keyword_index.uses
    assert "ktv" in other.segmenter.segment("镇上有个ktv").tokens
