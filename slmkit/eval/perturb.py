"""Robustness perturbations of task items, GSM-Plus style (Li et al. 2024, arXiv 2402.19255).

Each perturbation is ``f(item, rng) -> item | None`` (None: it does not apply to this item), in the
plain dict ``PERTURBATIONS``:

- ``numeric``: replace one number of the question by another of similar size and **recompute the
  answer** through the item's equation chain (GSM8K calculator annotations, SVAMP/MultiArith/AddSub/
  ASDiv equations, the built-in math steps). Only items whose chain reproduces the gold answer, and
  whose new chain stays sound (non-negative, integer where it was), are perturbed.
- ``digit_expansion``: the same with a number given one or two more digits.
- ``distractor``: an irrelevant sentence with a number is inserted before the question (answer kept).
- ``rephrase``: templated rewording — question first, or a framing sentence (answer kept).
- ``typo``: character noise (swap, drop, double a letter) in some words without digits (answer kept).

A perturbed item keeps its id, so Δ accuracy is measured on the same items with and without it. The
rng is seeded from (kind, item id): a perturbed test set is fixed, not redrawn per repeat.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from typing import Any

from slmkit.eval.steps import safe_eval

_QNUM = re.compile(r"(?<![\w.,$-])\d+(?:\.\d+)?(?![\w]|[.,]\d)")
_LITERAL = re.compile(r"\d+(?:\.\d+)?")
_NAMES = ("Priya", "Marco", "Hana", "Diego", "Chloe", "Yusuf", "Ingrid", "Tariq", "Mei", "Oscar")
_THINGS = ("paintings", "goldfish", "postcards", "umbrellas", "plants", "kites", "mugs", "puzzles")
_DISTRACTORS = (
    "{name} has {n} {thing} at home.",
    "Last year, {name} bought {n} {thing}.",
    "A shop nearby sells {n} {thing} every week.",
    "{name}'s cousin owns {n} {thing}, which plays no part in this problem.",
)
_REPHRASINGS = (
    "{q} Use this information: {body}",
    "Here is a problem. {body} Answer this: {q}",
    "Read carefully. {body} {q}",
    "Consider the following. {body} The question is: {q}",
)


def _fmt(value: float) -> str:
    return str(int(round(value))) if abs(value - round(value)) < 1e-9 else f"{value:g}"


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(b))


def _recompute(equations: list[list[str]], old: float, new: float) -> float | None:
    """Re-evaluate the chain with ``old`` -> ``new``; None when the chain is not sound or is ambiguous."""
    mapping = {old: new}
    result = None
    for expr, claimed in equations:
        def sub(m: re.Match) -> str:
            value = float(m.group(0))
            hits = [v for k, v in mapping.items() if _close(value, k)]
            return _fmt(hits[0]) if hits else m.group(0)

        before, claimed_value = safe_eval(expr), safe_eval(claimed.replace(",", ""))
        result = safe_eval(_LITERAL.sub(sub, expr))
        if before is None or claimed_value is None or result is None or not _close(before, claimed_value):
            return None
        if before < 0 <= claimed_value or (result < 0 <= before):
            return None
        if float(before).is_integer() and not float(result).is_integer():
            return None
        clash = [k for k in mapping if _close(k, before) and not _close(mapping[k], result)]
        if clash and not _close(before, result):
            return None  # an intermediate equals a mapped number with another new value: ambiguous
        mapping[before] = result
    return result


def _substitute(item: dict, rng: random.Random, draw: Callable[[random.Random, int], int]) -> dict | None:
    equations = item.get("equations") or []
    answer = safe_eval(item["answer"].replace(",", "")) if item.get("answer") else None
    if not equations or answer is None or safe_eval(equations[-1][1].replace(",", "")) is None:
        return None
    literals = {float(x) for expr, _ in equations for x in _LITERAL.findall(expr)}
    spots = [m for m in _QNUM.finditer(item["question"])
             if float(m.group(0)).is_integer() and float(m.group(0)) in literals
             and len(re.findall(rf"(?<![\d.]){re.escape(m.group(0))}(?![\d])", item["question"])) == 1]
    if not _close(safe_eval(equations[-1][1].replace(",", "")), answer) or not spots:
        return None
    for _ in range(10):
        spot = rng.choice(spots)
        old = int(spot.group(0))
        new = draw(rng, old)
        if new == old:
            continue
        result = _recompute(equations, float(old), float(new))
        if result is not None and result >= 0:
            question = item["question"][:spot.start()] + str(new) + item["question"][spot.end():]
            return {**item, "question": question, "answer": _fmt(result), "solution": "",
                    "meta": {**item.get("meta", {}), "perturbation": f"{old}->{new}"}}
    return None


def numeric(item: dict, rng: random.Random) -> dict | None:
    return _substitute(item, rng, lambda r, v: r.randint(max(2, v // 2), v * 2 + 3))


def digit_expansion(item: dict, rng: random.Random) -> dict | None:
    return _substitute(item, rng, lambda r, v: v * 10 ** r.choice((1, 2)) + r.randint(1, 9))


def _split_question(text: str) -> tuple[str, str]:
    """(body, final question sentence); the body is empty when the text is one sentence."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(sentences) < 2:
        return "", text.strip()
    return " ".join(sentences[:-1]), sentences[-1]


def distractor(item: dict, rng: random.Random) -> dict | None:
    body, question = _split_question(item["question"])
    extra = rng.choice(_DISTRACTORS).format(name=rng.choice(_NAMES), n=rng.randint(3, 60),
                                            thing=rng.choice(_THINGS))
    return {**item, "question": f"{body} {extra} {question}".strip()}


def rephrase(item: dict, rng: random.Random) -> dict | None:
    body, question = _split_question(item["question"])
    if not body:
        return None
    return {**item, "question": rng.choice(_REPHRASINGS).format(q=question, body=body)}


def _typo_word(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 2)
    kind = rng.choice(("swap", "drop", "double"))
    if kind == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if kind == "drop":
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def typo(item: dict, rng: random.Random, rate: float = 0.1) -> dict | None:
    words = item["question"].split(" ")
    candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not candidates:
        return None
    chosen = {i for i in candidates if rng.random() < rate} or {rng.choice(candidates)}
    return {**item, "question": " ".join(_typo_word(w, rng) if i in chosen else w for i, w in enumerate(words))}


PERTURBATIONS: dict[str, Callable[[dict, random.Random], dict | None]] = {
    "numeric": numeric,
    "digit_expansion": digit_expansion,
    "distractor": distractor,
    "rephrase": rephrase,
    "typo": typo,
}


def perturb_items(items: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The perturbed versions of the items it applies to (ids kept for pairing)."""
    from slmkit.errors import ConfigError

    if kind not in PERTURBATIONS:
        raise ConfigError(f"unknown perturbation '{kind}' (known: {', '.join(PERTURBATIONS)})")
    out = []
    for item in items:
        new = PERTURBATIONS[kind](item, random.Random(f"{kind}:{item['id']}"))
        if new is not None:
            out.append(new)
    return out
