"""Answer extractors: each is a function ``str -> str | None`` (None = nothing parseable), in a plain dict.

``hash`` takes the text after the last ``####`` (GSM8K's answer marker, Cobbe et al. 2021) up to the end
of that line. ``normalize`` makes numbers comparable ("1,000" == "1000.0" == "$1000") and leaves other
answers (e.g. sorted lists) with whitespace collapsed.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def extract_hash(text: str) -> str | None:
    """The answer after the last ``####`` marker, or None."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().splitlines()
    return answer[0].strip() if answer and answer[0].strip() else None


def normalize(answer: str) -> str:
    """Canonical form for exact match: numbers without $ , and trailing .0; other text space-collapsed."""
    text = answer.strip().rstrip(".").strip()
    bare = text.replace(",", "").replace("$", "").strip()
    if _NUMBER.match(bare):
        value = float(bare)
        return str(int(value)) if value == int(value) else str(value)
    return re.sub(r"\s+", " ", text)


def is_correct(extracted: str | None, gold: str) -> bool:
    """Exact match after normalisation; an unparseable prediction is wrong."""
    return extracted is not None and normalize(extracted) == normalize(gold)


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "hash": extract_hash,
}
