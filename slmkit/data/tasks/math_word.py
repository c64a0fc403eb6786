"""Built-in math task: synthetic GSM8K-style arithmetic word problems.

Follows the format of GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word
Problems", arXiv 2110.14168): a short story question, a worked solution with one
calculation per line, and a final ``#### <answer>`` line. Problems are generated in memory
from ``random.Random(seed)``; nothing is read or written.

A problem of k steps starts from one number and chains k operations (+ - * /), each using
the previous result and one new number from the question. Every intermediate result is a
non-negative integer and division is always exact, so each solution line
``<words> a op b = c.`` can be checked by ``verify_solution``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from slmkit.data.tasks.common import distinct_rows

# A step template pairs the question sentence with the short solution words that precede
# "a op b = c.", so the solution always talks about the same event as the question.
Template = tuple[str, str]

_NAMES: tuple[tuple[str, str], ...] = (
    ("Tom", "m"), ("Mia", "f"), ("Sam", "m"), ("Ana", "f"), ("Leo", "m"), ("Zoe", "f"),
    ("Ben", "m"), ("Ivy", "f"), ("Max", "m"), ("Eva", "f"), ("Jack", "m"), ("Lily", "f"),
    ("Omar", "m"), ("Nina", "f"), ("Ravi", "m"), ("Sara", "f"), ("Carlos", "m"),
    ("Emma", "f"), ("Kenji", "m"), ("Aisha", "f"), ("Luke", "m"), ("Rosa", "f"),
    ("Noah", "m"), ("Grace", "f"),
)

_PRONOUNS: dict[str, dict[str, str]] = {
    "m": {"p": "he", "P": "He", "o": "him", "s": "his", "S": "His"},
    "f": {"p": "she", "P": "She", "o": "her", "s": "her", "S": "Her"},
}

_ITEMS: tuple[str, ...] = (
    "apples", "stickers", "marbles", "cards", "pencils", "cookies", "shells", "stamps",
    "coins", "balloons", "beads", "crayons", "books", "pages", "toy cars", "erasers",
)


@dataclass(frozen=True)
class _Scene:
    """One kind of story: which quantity is tracked and how each operation is told."""

    fillers: tuple[dict[str, str], ...]
    starts: tuple[str, ...]
    steps: dict[str, tuple[Template, ...]]
    questions: tuple[str, ...]


_ITEM_SCENE = _Scene(
    fillers=tuple({"obj": obj} for obj in _ITEMS),
    starts=(
        "{N} has {a} {obj}.",
        "{N} starts with {a} {obj}.",
        "{N} has a box with {a} {obj} in it.",
        "There are {a} {obj} in {N}'s bag.",
    ),
    steps={
        "+": (
            ("{P} buys {b} more {obj}.", "{N} buys {b} more, so {p} has"),
            ("{P} finds {b} more {obj}.", "{N} finds {b} more, so {p} has"),
            ("{F} gives {o} {b} more {obj}.", "{F} gives {b} more, so {N} has"),
            ("Then {p} gets {b} more {obj}.", "{N} gets {b} more, so {p} has"),
            ("{P} wins {b} more {obj} at a fair.", "{N} wins {b} more, so {p} has"),
        ),
        "-": (
            ("{P} gives {b} {obj} to {F}.", "{N} gives away {b}, so {p} has"),
            ("{P} loses {b} of {s} {obj}.", "{N} loses {b}, so {p} has"),
            ("{P} sells {b} {obj}.", "{N} sells {b}, so {p} has"),
            ("{F} takes {b} {obj} from {o}.", "{F} takes {b}, so {N} has"),
            ("{P} uses {b} of the {obj}.", "{N} uses {b}, so {p} has"),
        ),
        "*": (
            ("{P} ends up with {b} times as many {obj} as before.",
             "{b} times as many, so {p} has"),
            ("After a trade, {p} has {b} times as many {obj}.", "{b} times as many, so {p} has"),
            ("The number of {obj} {p} has grows to {b} times as many.",
             "It grows {b} times, so {p} has"),
            ("{P} swaps each of {s} {obj} for {b} new ones.", "Each one becomes {b}, so {p} has"),
        ),
        "/": (
            ("{P} splits {s} {obj} into {b} equal groups and keeps 1 group.",
             "{N} keeps 1 of {b} groups, so {p} has"),
            ("{P} shares {s} {obj} equally among {b} kids and keeps one share.",
             "{N} keeps 1 of {b} shares, so {p} has"),
            ("{P} puts the {obj} into {b} equal piles and keeps 1 pile.",
             "{N} keeps 1 of {b} piles, so {p} has"),
            ("{P} keeps only 1 out of every {b} {obj}.", "{N} keeps 1 in {b}, so {p} has"),
        ),
    },
    questions=(
        "How many {obj} does {N} have now?",
        "How many {obj} does {N} have in the end?",
        "How many {obj} does {N} have at the end?",
    ),
)

_MONEY_SCENE = _Scene(
    fillers=({"obj": "dollars"},),
    starts=(
        "{N} has {a} dollars.",
        "{N} has saved {a} dollars.",
        "{N} starts the day with {a} dollars.",
        "There are {a} dollars in {N}'s wallet.",
    ),
    steps={
        "+": (
            ("{P} earns {b} more dollars.", "{N} earns {b}, so {p} has"),
            ("{F} gives {o} {b} dollars.", "{F} gives {b}, so {N} has"),
            ("{P} finds {b} dollars on the street.", "{N} finds {b}, so {p} has"),
            ("{P} is paid {b} dollars for chores.", "{N} is paid {b}, so {p} has"),
        ),
        "-": (
            ("{P} spends {b} dollars on lunch.", "{N} spends {b}, so {p} has"),
            ("{P} pays {b} dollars for a book.", "{N} pays {b}, so {p} has"),
            ("{P} gives {b} dollars to {F}.", "{N} gives away {b}, so {p} has"),
            ("{P} buys a toy for {b} dollars.", "The toy costs {b}, so {N} has"),
        ),
        "*": (
            ("{P} invests it and ends up with {b} times as much money.",
             "{b} times as much, so {p} has"),
            ("A prize makes {s} money {b} times as much.", "{b} times as much, so {p} has"),
            ("After a good week, {p} has {b} times as much money.",
             "{b} times as much, so {p} has"),
            ("{S} savings grow to {b} times the amount.", "Savings grow {b} times, so {p} has"),
        ),
        "/": (
            ("{P} splits {s} money equally into {b} jars and keeps 1 jar.",
             "{N} keeps 1 of {b} jars, so {p} has"),
            ("{P} shares the money equally among {b} kids and keeps one share.",
             "{N} keeps 1 of {b} shares, so {p} has"),
            ("{P} divides {s} money into {b} equal parts and keeps one part.",
             "{N} keeps 1 of {b} parts, so {p} has"),
            ("{P} keeps 1 dollar out of every {b} dollars.", "{N} keeps 1 in {b}, so {p} has"),
        ),
    },
    questions=(
        "How many dollars does {N} have now?",
        "How much money, in dollars, does {N} have now?",
        "How many dollars does {N} have in the end?",
    ),
)

# The tracked quantity is what is still left to do, so "-" (doing some of it) is natural
# for distances, pages and minutes, and "/" means sharing the rest with other people.
_PLAN_SCENE = _Scene(
    fillers=(
        {"unit": "km", "verb": "walk", "verbs": "walks"},
        {"unit": "miles", "verb": "run", "verbs": "runs"},
        {"unit": "km", "verb": "bike", "verbs": "bikes"},
        {"unit": "pages", "verb": "read", "verbs": "reads"},
        {"unit": "laps", "verb": "swim", "verbs": "swims"},
        {"unit": "minutes", "verb": "practice", "verbs": "practices"},
    ),
    starts=(
        "{N} has {a} {unit} left to {verb}.",
        "{N} plans to {verb} {a} {unit}.",
        "{N} still needs to {verb} {a} {unit}.",
        "{N} must {verb} {a} {unit} this week.",
    ),
    steps={
        "+": (
            ("{F} asks {o} to {verb} {b} more {unit}.", "{b} more are added, so {p} has"),
            ("{P} decides to {verb} {b} extra {unit}.", "{N} adds {b}, so {p} has"),
            ("The plan grows by {b} {unit}.", "The plan grows by {b}, so {p} has"),
            ("{S} coach adds {b} more {unit}.", "The coach adds {b}, so {p} has"),
        ),
        "-": (
            ("{P} {verbs} {b} {unit}.", "{N} {verbs} {b}, so {p} has"),
            ("In the morning, {p} {verbs} {b} {unit}.", "{N} {verbs} {b}, so {p} has"),
            ("{P} {verbs} {b} {unit} with {F}.", "{N} {verbs} {b}, so {p} has"),
            ("Before lunch, {p} {verbs} {b} {unit}.", "{b} are done, so {p} has"),
        ),
        "*": (
            ("A new plan makes what is left {b} times as long.",
             "It is {b} times as long, so {p} has"),
            ("{F} makes the rest {b} times as long.", "It is {b} times as long, so {p} has"),
            ("What is left is now {b} times as much.", "{b} times as much, so {p} has"),
            ("{S} coach makes the rest of the plan {b} times as long.",
             "It is {b} times as long, so {p} has"),
        ),
        "/": (
            ("{b} people share the rest equally, and {p} takes one share.",
             "{N} takes 1 of {b} shares, so {p} has"),
            ("The rest is split into {b} equal parts, and {p} only has to {verb} 1 part.",
             "{N} does 1 of {b} parts, so {p} has"),
            ("{P} and {s} friends split what is left into {b} equal parts, and {p} takes 1 part.",
             "{N} takes 1 of {b} parts, so {p} has"),
            ("The remaining {unit} are shared equally by {b} people, including {N}.",
             "{N} gets 1 of {b} shares, so {p} has"),
        ),
    },
    questions=(
        "How many {unit} does {N} have left to {verb} now?",
        "How many {unit} does {N} still have to {verb}?",
        "How many {unit} are left for {N} to {verb}?",
    ),
)

_SCENES: tuple[_Scene, ...] = (_ITEM_SCENE, _MONEY_SCENE, _PLAN_SCENE)
_OPS: tuple[str, ...] = ("+", "-", "*", "/")
# Above this a product would make later numbers too long for a tiny model to copy reliably.
_MAX_MULTIPLICAND = 500

# a op b = c over (possibly negative) integers; the look-arounds keep "0.5" or "12.5" from
# being read as the integer claims "5" or "12", so decimals are never half-parsed.
STEP_PATTERN: re.Pattern[str] = re.compile(
    r"(?<![\d.])(-?\d+)\s*([-+*/])\s*(-?\d+)\s*=\s*(-?\d+)(?!\.?\d)"
)
_FINAL_PATTERN = re.compile(r"####\s*(-?[\d,]+)")


def _pick_operand(rng: random.Random, op: str, cur: int, max_operand: int) -> int | None:
    """Return a new number b for ``cur op b`` keeping results non-negative ints, or None."""
    # Factors stay small (<= 9) so that chains of products do not explode.
    mult_cap = min(9, max(2, max_operand // 2))
    # New numbers start at 2: "1 more apples" is bad English and "* 1" / "/ 1" teach nothing.
    if op == "+":
        return rng.randint(2, max_operand)
    if op == "-":
        if cur < 3:
            return None
        return rng.randint(2, min(cur - 1, max_operand))
    if op == "*":
        return None if cur > _MAX_MULTIPLICAND else rng.randint(2, mult_cap)
    divisors = [d for d in range(2, mult_cap + 1) if cur % d == 0]
    return rng.choice(divisors) if divisors else None


def _apply(op: str, a: int, b: int) -> int:
    """Exact integer result of ``a op b`` (division is only ever asked when exact)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b


def _context(rng: random.Random, scene: _Scene) -> dict[str, str]:
    """Pick who the story is about, a friend, and what is being counted."""
    name, gender = rng.choice(_NAMES)
    friend = rng.choice([other for other, _ in _NAMES if other != name])
    return {"N": name, "F": friend, **_PRONOUNS[gender], **rng.choice(scene.fillers)}


def _make_problem(
    rng: random.Random, steps: int, max_operand: int
) -> tuple[str, str, int, list[str]]:
    """Build one problem: (question, solution, final answer, ops used)."""
    scene = rng.choice(_SCENES)
    ctx = _context(rng, scene)
    cur = rng.randint(2, max_operand)
    sentences = [rng.choice(scene.starts).format(a=cur, **ctx)]
    lines: list[str] = []
    ops: list[str] = []
    used: set[Template] = set()
    for _ in range(steps):
        order = list(_OPS)
        rng.shuffle(order)
        # "+" is always possible, so a step is always found; the shuffle makes the choice
        # uniform over the operations that fit the current number.
        for op in order:
            b = _pick_operand(rng, op, cur, max_operand)
            if b is not None:
                break
        # Repeating a sentence word for word reads like a glitch, so prefer fresh templates.
        fresh = [t for t in scene.steps[op] if t not in used] or list(scene.steps[op])
        question_text, words = rng.choice(fresh)
        used.add((question_text, words))
        new = _apply(op, cur, b)
        sentences.append(question_text.format(b=b, **ctx))
        lines.append(f"{words.format(b=b, **ctx)} {cur} {op} {b} = {new}.")
        ops.append(op)
        cur = new
    sentences.append(rng.choice(scene.questions).format(**ctx))
    lines.append(f"#### {cur}")
    return " ".join(sentences), "\n".join(lines), cur, ops


def _check_args(n: int, min_steps: int, max_steps: int, max_operand: int) -> None:
    """Raise ValueError naming the first bad argument."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if min_steps < 1:
        raise ValueError(f"min_steps must be >= 1, got {min_steps}")
    if max_steps < min_steps:
        raise ValueError(f"max_steps ({max_steps}) must be >= min_steps ({min_steps})")
    if max_operand < 2:
        raise ValueError(f"max_operand must be >= 2, got {max_operand}")


def generate(
    n: int, seed: int, *, min_steps: int = 1, max_steps: int = 4, max_operand: int = 20
) -> list[dict[str, Any]]:
    """Generate ``n`` distinct word problems, deterministically from ``seed``.

    ``max_operand`` bounds every number the question introduces (difficulty knob);
    the step count of each problem is uniform in ``[min_steps, max_steps]``.
    """
    _check_args(n, min_steps, max_steps, max_operand)

    def make_row(rng: random.Random) -> dict[str, Any]:
        steps = rng.randint(min_steps, max_steps)
        prompt, completion, answer, ops = _make_problem(rng, steps, max_operand)
        return {"prompt": prompt, "completion": completion, "answer": str(answer),
                "meta": {"task": "math", "steps": steps, "ops": ops, "seed": seed}}

    return distinct_rows(n, seed, make_row, "problems")


def _claim_holds(a: int, op: str, b: int, c: int) -> bool:
    """True when ``a op b = c`` is exact integer arithmetic."""
    if op == "/":
        return b != 0 and a % b == 0 and a // b == c
    return _apply(op, a, b) == c


def verify_solution(completion: str, answer: str) -> bool:
    """Check every ``a op b = c`` claim, and that the last c, ``####`` and ``answer`` agree.

    Claims hold one operator each; a chained ``a - b - c = d`` is read as its last
    ``b - c = d`` and so fails, which is the intended strictness for this task's format.
    """
    claims = STEP_PATTERN.findall(completion)
    finals = _FINAL_PATTERN.findall(completion)
    expected = answer.strip().replace(",", "")
    if not claims or not finals or not re.fullmatch(r"-?\d+", expected):
        return False
    for a, op, b, c in claims:
        if not _claim_holds(int(a), op, int(b), int(c)):
            return False
    final_text = finals[-1].replace(",", "")
    if not re.fullmatch(r"-?\d+", final_text):
        return False
    final = int(final_text)
    return int(claims[-1][3]) == final == int(expected)
