"""Filters applied to all candidate rows of a synthetic-data run, in order: length, exact duplicates,
near duplicates, contamination.

* **Length** -- answers longer than ``max_chars`` are dropped (Orca-Math, arXiv 2402.14830: 1,800).
* **Exact duplicates** -- the same prompt after lower-casing and whitespace folding.
* **Near duplicates** -- MinHash over word ``shingle``-grams with LSH (Broder 1997; datasketch's
  ``MinHashLSH``); a candidate whose estimated Jaccard similarity with a kept prompt reaches
  ``threshold`` is dropped (Lee et al. 2022, "Deduplicating training data", use 5-grams and 0.8).
* **Contamination** -- word ``n``-grams shared with an evaluation item (GPT-3, Brown et al. 2020, section 4,
  uses 13-grams) mark the item's words they cover; a prompt covering at least ``overlap`` of some item's
  words is dropped (the token-coverage measure of Llama 2, Touvron et al. 2023, appendix A.6, which calls
  > 80% "dirty"). Coverage rather than "any shared n-gram" matters for templated tasks, whose sentences
  are themselves longer than ``n`` words; evaluation items shorter than ``n`` words count as one n-gram of
  their own length (three words at least).

The first occurrence (in item order) is kept, so the output does not depend on thread scheduling.
Nothing is read or written here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: punctuation, case and spacing do not hide an overlap."""
    return _WORD.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> set[str]:
    """Every run of ``n`` consecutive words, joined by spaces."""
    return set(map(" ".join, zip(*(tokens[k:] for k in range(n))))) if n > 0 else set()


class NgramIndex:
    """Word n-grams of evaluation texts, to measure how much of an evaluation item a prompt reproduces."""

    def __init__(self, texts: Iterable[str], n: int, min_words: int = 3):
        self.n = n
        self.items: list[list[str]] = []
        self.owners: dict[int, int | list[int]] = {}  # hash(n-gram) -> the item(s) holding it
        for text in texts:
            tokens = words(text)
            if len(tokens) < min_words:
                continue
            self.items.append(tokens)
            for gram in ngrams(tokens, min(n, len(tokens))):
                self._own(hash(gram), len(self.items) - 1)
        self.lengths = sorted({min(n, len(t)) for t in self.items})

    def _own(self, key: int, item: int) -> None:
        held = self.owners.get(key)
        if held is None:
            self.owners[key] = item
        elif isinstance(held, int):
            if held != item:
                self.owners[key] = [held, item]
        elif held[-1] != item:
            held.append(item)

    def overlap(self, text: str) -> tuple[float, int | None]:
        """(largest share of an evaluation item's words covered by n-grams shared with ``text``, that item)."""
        tokens = words(text)
        grams = {length: ngrams(tokens, length) for length in self.lengths if length <= len(tokens)}
        shared: set[int] = set()
        for found in grams.values():
            for gram in found:
                held = self.owners.get(hash(gram))
                if held is not None:
                    shared.update([held] if isinstance(held, int) else held)
        best, where = 0.0, None
        for item in sorted(shared):
            length = min(self.n, len(self.items[item]))
            cover = _coverage(self.items[item], grams.get(length, set()), length)
            if cover > best:
                best, where = cover, item
        return best, where


def _coverage(tokens: list[str], grams: set[str], length: int) -> float:
    """Share of ``tokens`` inside at least one of their ``length``-grams that is in ``grams``."""
    covered: set[int] = set()
    for p in range(len(tokens) - length + 1):
        if " ".join(tokens[p:p + length]) in grams:
            covered.update(range(p, p + length))
    return len(covered) / len(tokens)


class NearDuplicates:
    """MinHash-LSH membership: ``seen(text)`` is True when a similar text was added before (else adds it)."""

    def __init__(self, threshold: float = 0.8, shingle: int = 5, num_perm: int = 128, seed: int = 1):
        from datasketch import MinHashLSH

        self.threshold, self.shingle, self.num_perm, self.seed = threshold, shingle, num_perm, seed
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.hashes: dict[str, Any] = {}

    def minhash(self, text: str) -> Any:
        from datasketch import MinHash

        tokens = words(text)
        grams = ngrams(tokens, min(self.shingle, len(tokens))) if tokens else {""}
        m = MinHash(num_perm=self.num_perm, seed=self.seed)
        m.update_batch([g.encode("utf-8") for g in sorted(grams)])
        return m

    def seen(self, key: str, text: str) -> bool:
        m = self.minhash(text)
        # LSH proposes candidates; the estimated Jaccard decides, so a lucky band collision is not a drop.
        if any(m.jaccard(self.hashes[other]) >= self.threshold for other in self.lsh.query(m)):
            return True
        self.lsh.insert(key, m)
        self.hashes[key] = m
        return False


@dataclass(frozen=True)
class FilterSettings:
    max_chars: int = 1800
    dedup: bool = True
    near_threshold: float = 0.8
    shingle: int = 5
    num_perm: int = 128
    overlap: float = 0.8


def apply_filters(rows: list[dict[str, Any]], settings: FilterSettings, index: NgramIndex | None,
                  ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], Counter]:
    """(kept rows, rejected rows with their ``reason``, reason counts); the first occurrence wins."""
    kept, rejected, counts = [], [], Counter()
    exact: set[str] = set()
    near = NearDuplicates(settings.near_threshold, settings.shingle, settings.num_perm) if settings.dedup else None
    for i, row in enumerate(rows):
        reason = _reason(row, i, settings, exact, near, index)
        if reason:
            counts[reason] += 1
            rejected.append({**row, "reason": reason})
        else:
            kept.append(row)
    return kept, rejected, counts


def _reason(row: dict[str, Any], i: int, settings: FilterSettings, exact: set[str],
            near: NearDuplicates | None, index: NgramIndex | None) -> str | None:
    if settings.max_chars and len(row["completion"]) > settings.max_chars:
        return "filter:too_long"
    if near is not None:
        folded = " ".join(row["prompt"].lower().split())
        if folded in exact:
            return "filter:duplicate"
        exact.add(folded)
        if near.seen(str(i), row["prompt"]):
            return "filter:near_duplicate"
    if index is not None and index.overlap(row["prompt"])[0] >= settings.overlap:
        return "filter:contaminated"
    return None
