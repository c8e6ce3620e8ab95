"""Chinese word segmentation for triage: jieba, with the matter catalogue's keywords added.

A keyword counts in a tip when the tip's segmentation keeps it as a word (or a run of whole
words), not when its characters merely occur inside other words: "加班" (overtime) must not
be found in "增加班车" (add more buses), which segments as 增加/班车.

jieba's own dictionary is read from the installed package (``jieba/dict.txt``) once per
process; jieba's cache file (``jieba.cache`` in the temp directory, trusted without any check
and shared with every other jieba user on the host) is never read or written, so segmentation
works on a read-only file system. Building from the packaged file takes about as long as
loading jieba's cache (~0.6 s), and each catalogue version then copies the prefix dictionary
and adds its keywords (~10 ms), so versions never see each other's keywords.

A tip is not checked against every keyword of the catalogue: ``KeywordIndex`` folds the
keywords once per catalogue version and finds which of them occur in the tip from the tip's
own substrings, so each distinct keyword is judged once per tip however many items share it.
"""

from __future__ import annotations

import enum
import logging
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from math import log

import jieba

# jieba logs its progress to stderr through a handler of its own; the services' logs are JSON.
logging.getLogger("jieba").setLevel(logging.WARNING)

# A keyword whose characters occur across word boundaries still counts when keeping it whole
# is nearly as likely, to jieba's model, as the segmentation jieba chose: "有人大货车" is cut
# 有/人大/货车 but 有/人/大货车 is only 0.2 nats (x1.2) less likely. A keyword inside unrelated
# words costs far more ("增加班车" → 加班: 8.4 nats; "儿童工作站" → 童工: 15).
SPLIT_MARGIN = 2.0  # nats (a factor of e² ≈ 7.4)


def fold(text: str) -> str:
    """Full-width ＫＴＶ and lower-case ktv both match the keyword KTV."""
    return unicodedata.normalize("NFKC", text).casefold()


class Found(enum.Enum):
    WHOLE = "whole"  # one word, or a run of whole words, of the segmentation
    SPLIT = "split"  # cut by jieba, but keeping it whole is within SPLIT_MARGIN
    INSIDE = "inside"  # its characters occur only inside or across other words
    ABSENT = "absent"


@dataclass(frozen=True)
class Segmented:
    text: str
    tokens: tuple[str, ...]
    boundaries: frozenset[int]  # character offsets where a token starts or ends

    def words_around(self, start: int, end: int) -> str:
        """The tokens an occurrence at [start, end) overlaps, joined by '/'."""
        out, offset = [], 0
        for token in self.tokens:
            if offset < end and offset + len(token) > start:
                out.append(token)
            offset += len(token)
        return "/".join(out)


_base_lock = threading.Lock()
_base: tuple[dict[str, int], int] | None = None


def _base_dictionary() -> tuple[dict[str, int], int]:
    """jieba's prefix dictionary and total frequency, from the installed package's dict.txt."""
    global _base
    with _base_lock:
        if _base is None:
            with files("jieba").joinpath(jieba.DEFAULT_DICT_NAME).open("rb") as packaged:
                _base = jieba.Tokenizer.gen_pfdict(packaged)
        return _base


class KeywordIndex:
    """Each distinct folded keyword of a list of keyword lists (one per catalogue item), with
    where it is used: (list position, position in that list), in list order."""

    def __init__(self, keyword_lists: Iterable[Iterable[str]]) -> None:
        uses: dict[str, list[tuple[int, int]]] = {}
        for n, words in enumerate(keyword_lists):
            for k, word in enumerate(words):
                folded = fold(word)
                if folded:  # an empty keyword occurs nowhere
                    uses.setdefault(folded, []).append((n, k))
        self.uses: Mapping[str, tuple[tuple[int, int], ...]] = {
            word: tuple(at) for word, at in uses.items()
        }
        self._lengths = sorted({len(word) for word in uses})

    def occurring(self, text: str) -> set[str]:
        """The keywords whose characters occur in ``text`` (folded), as words or not."""
        uses, end = self.uses, len(text)
        return {
            text[i : i + n]
            for n in self._lengths
            for i in range(end - n + 1)
            if text[i : i + n] in uses
        }


class KeywordSegmenter:
    """jieba's dictionary plus the catalogue's (already folded) keywords; one per version."""

    def __init__(self, keywords: Iterable[str]) -> None:
        freq, total = _base_dictionary()
        tokenizer = jieba.Tokenizer()
        # jieba 0.42's own state, set as Tokenizer.initialize() would from its cache file.
        tokenizer.FREQ = dict(freq)
        tokenizer.total = total
        tokenizer.initialized = True
        # Sorted: each word's suggested frequency depends on the words added before it.
        for word in sorted({w for w in keywords if w.strip()}):
            # Frequency just high enough that jieba keeps the word whole on its own, not so
            # high that it wins over the ordinary words around it.
            tokenizer.add_word(word)
        self._tokenizer = tokenizer
        self._log_total = log(tokenizer.total)

    def segment(self, text: str) -> Segmented:
        tokens = tuple(self._tokenizer.cut(text))
        boundaries, offset = {0}, 0
        for token in tokens:
            offset += len(token)
            boundaries.add(offset)
        return Segmented(text, tokens, frozenset(boundaries))

    def find(self, segmented: Segmented, word: str) -> tuple[Found, int]:
        """How ``word`` occurs in the segmented text, and where (-1 when absent)."""
        text = segmented.text
        first = start = text.find(word) if word else -1
        if first == -1:
            return Found.ABSENT, -1
        while start != -1:
            if start in segmented.boundaries and start + len(word) in segmented.boundaries:
                return Found.WHOLE, start
            start = text.find(word, start + 1)
        start, best = first, self._best(text)
        while start != -1:
            if self._cost_of_keeping_whole(text, best, start, start + len(word)) <= SPLIT_MARGIN:
                return Found.SPLIT, start
            start = text.find(word, start + 1)
        return Found.INSIDE, first

    def _cost_of_keeping_whole(self, text: str, best: float, start: int, end: int) -> float:
        """Log-likelihood lost, under jieba's unigram model, by keeping text[start:end] whole
        rather than segmenting as ``best`` (the text's best log-likelihood) says."""
        word_score = log(self._tokenizer.FREQ.get(text[start:end]) or 1) - self._log_total
        forced = self._best(text[:start]) + word_score + self._best(text[end:])
        return best - forced

    def _best(self, text: str) -> float:
        if not text:
            return 0.0
        route: dict[int, tuple[float, int]] = {}
        self._tokenizer.calc(text, self._tokenizer.get_DAG(text), route)
        return route[0][0]
