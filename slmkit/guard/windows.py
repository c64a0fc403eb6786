"""Long-prompt handling shared by every guard: overlapping windows, chunk-and-max scoring, window labels.

A jailbreak template runs to hundreds of tokens and the question may sit anywhere inside it, so a guard
never truncates: it cuts the prompt into windows of ``size`` units (tokens for an encoder, words for the
n-gram baseline) that start ``stride`` apart, the last one flush with the end, scores every window and
takes the maximum (chunk-and-max). Any question shorter than ``size - stride`` units lies whole inside
some window.

Training must match: for a jailbreak-wrapped row (``meta.spans`` holds the question's character spans)
the window that holds most of the question carries the row's label and one window with none of it
carries ``comply`` (template text alone is answerable), so the template can never decide. Other rows
give every window their own label.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def window_bounds(n: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` over ``n`` units: ``stride`` apart, the last one ending at ``n``."""
    if size <= 0 or not 0 < stride <= size:
        raise ValueError(f"window size {size} and stride {stride}: need 0 < stride <= size")
    if n <= size:
        return [(0, n)]
    starts = list(range(0, n - size, stride)) + [n - size]
    return [(s, s + size) for s in starts]


def unit_overlap(offsets: Sequence[tuple[int, int]], spans: Sequence[Sequence[int]]) -> list[bool]:
    """For each unit (with character offsets), whether it overlaps any of the character spans."""
    return [any(a < e and s < b for s, e in spans) for a, b in offsets]


def training_windows(offsets: Sequence[tuple[int, int]], label: int, spans: Sequence[Sequence[int]] | None,
                     size: int, stride: int, rng: random.Random) -> list[tuple[tuple[int, int], int]]:
    """``((start, end), label)`` training windows of one row (see the module docstring)."""
    bounds = window_bounds(len(offsets), size, stride)
    if not spans or len(bounds) == 1:
        return [(b, label) for b in bounds]
    inside = unit_overlap(offsets, spans)
    counts = [sum(inside[s:e]) for s, e in bounds]
    best = max(range(len(bounds)), key=lambda i: counts[i])
    out = [(bounds[best], label)]
    empty = [b for b, c in zip(bounds, counts) if c == 0]
    if empty:
        out.append((rng.choice(empty), 0))
    return out


def max_per_text(window_scores: Sequence[float], owners: Sequence[int], n_texts: int) -> list[float]:
    """Chunk-and-max: the highest window score of each text."""
    out = [0.0] * n_texts
    seen = [False] * n_texts
    for score, owner in zip(window_scores, owners):
        if not seen[owner] or score > out[owner]:
            out[owner], seen[owner] = float(score), True
    return out
