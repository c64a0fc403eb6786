"""Unit conversion: QA pairs with worked solutions, and explanatory documents of the same knowledge.

Questions ask to convert a whole number of one unit into another of the same family (metric length, mass,
volume; time; US customary), in one or more steps along a chain (``h → min → s``). The solution states the
conversion fact and the arithmetic on one line per step — ``1 h = 60 min, so 3 h = 3 * 60 = 180 min.`` —
and ends with ``#### <answer>``; every value is an exact integer and ``verify_solution`` re-checks each
fact against the table and each calculation. ``documents`` writes short explanatory texts (what a unit is,
how to convert both ways, worked examples) carrying the same facts without the questions: the document
side of pre-instruction tuning (Jiang et al. 2024, arXiv 2402.12847), where QA pairs are learnt before
and then alongside the documents that hold the knowledge. In memory, from ``random.Random(seed)``.
"""

from __future__ import annotations

import random
import re
import zlib
from typing import Any

from slmkit.data.tasks.common import distinct_rows

# family -> chain of (unit, full name, plural); each unit is FACTORS[i] of the next one down the chain.
CHAINS: dict[str, list[tuple[tuple[str, str, str], ...]]] = {
    "length": [(("km", "kilometre", "kilometres"), ("m", "metre", "metres"), ("cm", "centimetre", "centimetres"),
                ("mm", "millimetre", "millimetres"))],
    "mass": [(("t", "tonne", "tonnes"), ("kg", "kilogram", "kilograms"), ("g", "gram", "grams"),
              ("mg", "milligram", "milligrams"))],
    "volume": [(("kl", "kilolitre", "kilolitres"), ("l", "litre", "litres"), ("ml", "millilitre", "millilitres"))],
    "time": [(("wk", "week", "weeks"), ("d", "day", "days"), ("h", "hour", "hours"), ("min", "minute", "minutes"),
              ("s", "second", "seconds"))],
    "us": [(("mi", "mile", "miles"), ("yd", "yard", "yards"), ("ft", "foot", "feet"), ("in", "inch", "inches")),
           (("gal", "gallon", "gallons"), ("qt", "quart", "quarts"), ("pt", "pint", "pints")),
           (("lb", "pound", "pounds"), ("oz", "ounce", "ounces"))],
}
FACTORS: dict[tuple[str, str], int] = {
    ("km", "m"): 1000, ("m", "cm"): 100, ("cm", "mm"): 10, ("t", "kg"): 1000, ("kg", "g"): 1000,
    ("g", "mg"): 1000, ("kl", "l"): 1000, ("l", "ml"): 1000, ("wk", "d"): 7, ("d", "h"): 24,
    ("h", "min"): 60, ("min", "s"): 60, ("mi", "yd"): 1760, ("yd", "ft"): 3, ("ft", "in"): 12,
    ("gal", "qt"): 4, ("qt", "pt"): 2, ("lb", "oz"): 16,
}
FAMILIES: tuple[str, ...] = tuple(CHAINS)
QUESTIONS = ("Convert {v} {a} to {b}.", "How many {b} are in {v} {a}?", "{v} {a} is how many {b}?",
             "Express {v} {a} in {b}.")
STEP = re.compile(r"1 (\S+) = (\d+) (\S+), so (\d+) (\S+) = (\d+) ([*/]) (\d+) = (\d+) (\S+)\.")


def _check_args(n: int, families: list[str], max_value: int, max_steps: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = [f for f in families if f not in CHAINS]
    if unknown or not families:
        raise ValueError(f"families must be a non-empty list of {', '.join(FAMILIES)}, got {families!r}")
    if max_value < 2:
        raise ValueError(f"max_value must be >= 2, got {max_value}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")


def _families(families: str | list[str] | None) -> list[str]:
    if families in (None, "all"):
        return list(FAMILIES)
    return [families] if isinstance(families, str) else list(families)


def _pick_path(rng: random.Random, families: list[str], max_steps: int) -> tuple[str, list[tuple[str, str, str]]]:
    """(family, a run of consecutive units down one of its chains: 1..max_steps conversions)."""
    family = rng.choice(families)
    chain = rng.choice(CHAINS[family])
    steps = rng.randint(1, min(max_steps, len(chain) - 1))
    start = rng.randint(0, len(chain) - 1 - steps)
    return family, list(chain[start:start + steps + 1])


def _solution(path: list[str], value: int, down: bool) -> tuple[list[str], int]:
    """One line per step (``1 big = f small, so ...``) and the final value."""
    lines = []
    order = path if down else path[::-1]
    for a, b in zip(order, order[1:]):
        big, small = (a, b) if down else (b, a)
        factor = FACTORS[(big, small)]
        new = value * factor if down else value // factor
        op = "*" if down else "/"
        lines.append(f"1 {big} = {factor} {small}, so {value} {a} = {value} {op} {factor} = {new} {b}.")
        value = new
    return lines, value


def _question(value: int, source: str, target: str) -> str:
    """The one wording of a question: a question never appears twice in other words (across splits)."""
    key = zlib.crc32(f"{value} {source} {target}".encode())
    return QUESTIONS[key % len(QUESTIONS)].format(v=value, a=source, b=target)


def _make_row(rng: random.Random, families: list[str], max_value: int, max_steps: int) -> dict[str, Any]:
    family, units = _pick_path(rng, families, max_steps)
    symbols = [u[0] for u in units]
    down = rng.random() < 0.5
    big_value = rng.randint(2, max_value)
    total = 1
    for a, b in zip(symbols, symbols[1:]):
        total *= FACTORS[(a, b)]
    # Going up (small -> big) asks about a multiple of the total factor, so every division is exact.
    value = big_value if down else big_value * total
    source, target = (symbols[0], symbols[-1]) if down else (symbols[-1], symbols[0])
    lines, answer = _solution(symbols, value, down)
    return {
        "prompt": _question(value, source, target),
        "completion": "\n".join(lines) + f"\n#### {answer}",
        "answer": str(answer),
        "meta": {"task": "units", "family": family, "steps": len(lines), "direction": "down" if down else "up"},
    }


def generate(n: int, seed: int, *, families: str | list[str] | None = "all", max_value: int = 20,
             max_steps: int = 1) -> list[dict[str, Any]]:
    """``n`` distinct conversion questions (deterministic in ``seed``)."""
    chosen = _families(families)
    _check_args(n, chosen, max_value, max_steps)
    return distinct_rows(n, seed, lambda rng: _make_row(rng, chosen, max_value, max_steps), "conversions")


DOC_OPENINGS = (
    "A {big_name} ({big}) is {f} {small_plural} ({small}).",
    "There are {f} {small_plural} in one {big_name}.",
    "One {big_name} equals {f} {small_plural}: 1 {big} = {f} {small}.",
)
DOC_DOWN = ("To convert {big_plural} to {small_plural}, multiply by {f}.",
            "To go from {big} to {small}, multiply the number of {big_plural} by {f}.")
DOC_UP = ("To convert {small_plural} to {big_plural}, divide by {f}.",
          "To go from {small} to {big}, divide the number of {small_plural} by {f}.")


def _document(rng: random.Random, pair: tuple[tuple[str, str, str], tuple[str, str, str]], low: int) -> str:
    """A short text about one conversion fact, both directions, with worked examples of low..2·low units."""
    (big, big_name, big_plural), (small, small_name, small_plural) = pair
    f = FACTORS[(big, small)]
    words = dict(big=big, big_name=big_name, big_plural=big_plural, small=small, small_plural=small_plural, f=f)
    sentences = [rng.choice(DOC_OPENINGS).format(**words), rng.choice(DOC_DOWN).format(**words)]
    for _ in range(rng.randint(1, 2)):
        v = rng.randint(low, 2 * low)
        sentences.append(f"For example, {v} {big} = {v} * {f} = {v * f} {small}.")
    sentences.append(rng.choice(DOC_UP).format(**words))
    v = rng.randint(low, 2 * low)
    sentences.append(f"For example, {v * f} {small} = {v * f} / {f} = {v} {big}.")
    return " ".join(sentences)


def documents(n: int, seed: int, *, families: str | list[str] | None = "all", max_value: int = 20,
              **_: Any) -> list[dict[str, Any]]:
    """``n`` explanatory documents (rows with an empty prompt: the whole text is learnt), cycling the facts.

    Worked examples use max_value+1 .. 2·max_value+2 units, beyond any question of ``generate`` with the same
    ``max_value``: the documents teach the facts and never state the answer of a one-step question (a
    multi-step question's intermediate value may appear). Other keyword arguments of
    ``generate`` are accepted and ignored, so one ``params`` mapping serves both.
    """
    chosen = _families(families)
    _check_args(n, chosen, max_value, 1)
    pairs = [(c[i], c[i + 1]) for f in chosen for c in CHAINS[f] for i in range(len(c) - 1)]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pair = pairs[i % len(pairs)]
        rows.append({"prompt": "", "completion": _document(rng, pair, max_value + 1), "answer": "",
                     "meta": {"task": "units", "kind": "document", "fact": f"{pair[0][0]}->{pair[1][0]}"}})
    return rows


def verify_solution(completion: str, answer: str) -> bool:
    """Every line states a true conversion fact and exact arithmetic, chained, ending at ``answer``."""
    lines, final = completion.rsplit("\n#### ", 1) if "\n#### " in completion else ("", "")
    previous = None
    for line in lines.splitlines():
        m = STEP.fullmatch(line)
        if not m:
            return False
        big, factor, small, value, source, a, op, f2, result, target = m.groups()
        down = op == "*"
        if FACTORS.get((big, small)) != int(factor) or int(f2) != int(factor) or a != value:
            return False
        if (source, target) != ((big, small) if down else (small, big)):
            return False
        expected = int(value) * int(factor) if down else int(value) / int(factor)
        if expected != int(result) or (previous is not None and previous != (int(value), source)):
            return False
        previous = (int(result), target)
    return previous is not None and str(previous[0]) == final.strip() == answer
