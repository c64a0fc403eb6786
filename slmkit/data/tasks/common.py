"""What every built-in task generator shares: drawing ``n`` rows with distinct prompts from one seed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


def distinct_rows(n: int, seed: int, make_row: Callable[[random.Random], dict[str, Any]],
                  what: str = "rows") -> list[dict[str, Any]]:
    """Call ``make_row(rng)`` until ``n`` rows with distinct prompts exist (deterministic in ``seed``).

    Distinct prompts matter because splits are cut from one draw: a repeated prompt could land in both
    train and test. Gives up with a ValueError when the generator's space is too small for ``n``.
    """
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could only make {len(rows)} distinct {what} of n={n}; widen the task's options")
        row = make_row(rng)
        if row["prompt"] not in seen:
            seen.add(row["prompt"])
            rows.append(row)
    return rows
