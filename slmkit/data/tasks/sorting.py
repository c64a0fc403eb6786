"""Sorting task from ThinkSLM (Srivastava, Cao & Wang, EMNLP 2025, arXiv 2502.11569).

ThinkSLM's six sorting tasks ask small models to sort lists of 8, 16 or 32 integers, either
all positive or of mixed sign. Each row asks to sort one list in ascending order; the
completion is ``#### <sorted list>``, so the ``####`` answer extraction of the math task
applies unchanged.
Rows are generated in memory from ``random.Random(seed)``; nothing is read or written.
"""

from __future__ import annotations

import random
from typing import Any

from slmkit.data.tasks.common import distinct_rows

SIGNS: tuple[str, ...] = ("positive", "mixed")
# The lengths the paper reports; other lengths >= 2 are allowed for curricula.
PAPER_LENGTHS: tuple[int, ...] = (8, 16, 32)


def _check_args(n: int, length: int, signs: str, max_abs: int) -> None:
    """Raise ValueError naming the first bad argument."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    if signs not in SIGNS:
        raise ValueError(f"signs must be one of {', '.join(SIGNS)}, got {signs!r}")
    # Numbers in one list are distinct, so the pool of values must hold `length` of them.
    pool = max_abs if signs == "positive" else 2 * max_abs + 1
    if max_abs < 1 or pool < length:
        raise ValueError(
            f"max_abs={max_abs} leaves too few distinct {signs} values for length={length}"
        )


def _make_list(rng: random.Random, length: int, signs: str, max_abs: int) -> list[int]:
    """Draw ``length`` distinct integers; mixed lists hold at least one of each sign."""
    if signs == "positive":
        return rng.sample(range(1, max_abs + 1), length)
    while True:
        values = rng.sample(range(-max_abs, max_abs + 1), length)
        # Without both signs a "mixed" row would silently test the positive case.
        if min(values) < 0 < max(values):
            return values


def _join(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def generate(
    n: int, seed: int, *, length: int = 8, signs: str = "positive", max_abs: int = 99
) -> list[dict[str, Any]]:
    """Generate ``n`` distinct sorting rows deterministically from ``seed``.

    ``signs`` is ``"positive"`` (values in 1..max_abs) or ``"mixed"`` (values in
    -max_abs..max_abs with both signs present).
    """
    _check_args(n, length, signs, max_abs)

    def make_row(rng: random.Random) -> dict[str, Any]:
        values = _make_list(rng, length, signs, max_abs)
        answer = _join(sorted(values))
        return {"prompt": f"Sort these numbers in ascending order: {_join(values)}",
                "completion": f"#### {answer}", "answer": answer,
                "meta": {"task": "sorting", "length": length, "signs": signs, "seed": seed}}

    return distinct_rows(n, seed, make_row, "lists")
