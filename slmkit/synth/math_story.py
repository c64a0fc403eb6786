"""Read, solve, edit and write problems in the language of the built-in math task (``data/tasks/math_word``).

A problem of that task is a *story*: a start sentence (one number), a chain of step sentences (one
operation and one new number each) and a question. :func:`parse` inverts the generator's sentence
templates with regular expressions (each ``{placeholder}`` becomes a group restricted to the words the
generator can put there; a repeated placeholder must repeat the same word), checks that names, pronouns and
objects agree across sentences, and returns a :class:`Story`; :meth:`Story.text` and
:meth:`Story.solution` write it back in exactly the generator's format, so ``parse(story.text())``
round-trips. The editing helpers (:func:`scale_numbers`, :func:`add_step`) keep every intermediate
result a non-negative integer and every division exact, so an edited story is always solvable.

This module is what the rule-based teacher (``synth/rule_teacher.py``) understands; nothing is read or
written here.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache

# The rule teacher speaks exactly the generator's language, so it reads the generator's own tables.
from slmkit.data.tasks.math_word import (_ITEMS, _NAMES, _OPS, _PRONOUNS, _SCENES, STEP_PATTERN, Template,
                                         _apply, _claim_holds, _pick_operand, _Scene)

OP_NAMES = {"+": "addition", "-": "subtraction", "*": "multiplication", "/": "division"}
MAX_VALUE = 1_000_000  # edits never let a quantity grow past this (a story about a million apples is enough)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_GENDER_OF = {"he": "m", "He": "m", "him": "m", "his": "m", "His": "m",
              "she": "f", "She": "f", "her": "f", "Her": "f"}


class StoryError(ValueError):
    """The text is not a problem of the built-in math language (the message says which part)."""


@dataclass
class Step:
    """One step sentence: ``current op b``, told by ``template`` (question sentence, solution words)."""

    op: str
    b: int
    template: Template


@dataclass
class Story:
    """A parsed problem; ``ctx`` holds the words placed in the templates (name, friend, pronouns, object)."""

    scene: _Scene
    ctx: dict[str, str]
    start: int
    start_template: str
    question_template: str
    steps: list[Step] = field(default_factory=list)

    def values(self) -> list[int]:
        """The quantity after the start and after every step."""
        out = [self.start]
        for step in self.steps:
            out.append(_apply(step.op, out[-1], step.b))
        return out

    @property
    def answer(self) -> int:
        return self.values()[-1]

    def text(self) -> str:
        """The problem, in the generator's words."""
        sentences = [self.start_template.format(a=self.start, **self.ctx)]
        sentences += [s.template[0].format(b=s.b, **self.ctx) for s in self.steps]
        sentences.append(self.question_template.format(**self.ctx))
        return " ".join(sentences)

    def solution(self) -> str:
        """One ``words a op b = c.`` line per step and a final ``#### answer`` line."""
        values = self.values()
        lines = [f"{s.template[1].format(b=s.b, **self.ctx)} {values[i]} {s.op} {s.b} = {values[i + 1]}."
                 for i, s in enumerate(self.steps)]
        return "\n".join(lines + [f"#### {values[-1]}"])

    def is_valid(self) -> bool:
        """Every intermediate result is a non-negative integer within bounds and every division exact."""
        cur = self.start
        for s in self.steps:
            if s.b < 1 or (s.op == "/" and cur % s.b) or (s.op == "-" and s.b > cur):
                return False
            cur = _apply(s.op, cur, s.b)
            if cur > MAX_VALUE:
                return False
        return self.start >= 0


def _alternatives(words: list[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


def _slot_patterns(scene: _Scene) -> dict[str, str]:
    """What each placeholder may stand for in ``scene``."""
    names = [n for n, _ in _NAMES]
    slots = {"N": names, "F": names, "a": None, "b": None}
    for key in ("p", "P", "o", "s", "S"):
        slots[key] = [pr[key] for pr in _PRONOUNS.values()]
    for key in {k for filler in scene.fillers for k in filler}:
        slots[key] = [filler[key] for filler in scene.fillers]
    return {k: r"\d+" if v is None else _alternatives(v) for k, v in slots.items()}


@lru_cache(maxsize=None)
def _compile(template: str, scene_index: int) -> re.Pattern[str]:
    """A full-match regex for one template; a repeated placeholder must repeat the same text."""
    slots = _slot_patterns(_SCENES[scene_index])
    out, seen = [], set()
    for i, part in enumerate(_PLACEHOLDER.split(template)):
        if i % 2 == 0:
            out.append(re.escape(part))
        elif part in seen:
            out.append(f"(?P={part})")
        else:
            seen.add(part)
            out.append(f"(?P<{part}>{slots[part]})")
    return re.compile("".join(out))


def _merge(ctx: dict[str, str], found: dict[str, str]) -> dict[str, str] | None:
    """``ctx`` plus the words of one more sentence, or None when they contradict each other."""
    merged = dict(ctx)
    for key, value in found.items():
        if key in ("a", "b"):
            continue
        if key in _PRONOUNS["m"]:
            gender = _GENDER_OF[value]
            if merged.setdefault("gender", gender) != gender:
                return None
        elif merged.setdefault(key, value) != value:
            return None
    if "N" in merged and merged.get("F") == merged["N"]:
        return None
    return merged


def _matches(sentence: str, templates: list[str], scene_index: int) -> list[tuple[str, dict[str, str]]]:
    found = []
    for template in templates:
        m = _compile(template, scene_index).fullmatch(sentence)
        if m:
            found.append((template, m.groupdict()))
    return found


def parse(text: str) -> Story:
    """The :class:`Story` told by ``text``; raises :class:`StoryError` naming the sentence it cannot read."""
    sentences = [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]
    if len(sentences) < 2:
        raise StoryError("a problem needs a start sentence and a question")
    errors = []
    for index, scene in enumerate(_SCENES):
        try:
            return _parse_scene(sentences, scene, index)
        except StoryError as err:
            errors.append(str(err))
    raise StoryError(min(errors, key=len) if errors else "no scene fits")


def _parse_scene(sentences: list[str], scene: _Scene, index: int) -> Story:
    starts = _matches(sentences[0], list(scene.starts), index)
    if not starts:
        raise StoryError(f"cannot read the start sentence {sentences[0]!r}")
    start_template, found = starts[0]
    ctx = _merge({}, found)
    steps = []
    step_templates = {t[0]: (op, t) for op in _OPS for t in scene.steps[op]}
    for sentence in sentences[1:-1]:
        options = [(t, g, _merge(ctx, g)) for t, g in _matches(sentence, list(step_templates), index)]
        options = [o for o in options if o[2] is not None]
        if not options:
            raise StoryError(f"cannot read the step {sentence!r}")
        template, groups, ctx = options[0]
        op, pair = step_templates[template]
        steps.append(Step(op, int(groups["b"]), pair))
    questions = [(t, _merge(ctx, g)) for t, g in _matches(sentences[-1], list(scene.questions), index)]
    questions = [q for q in questions if q[1] is not None]
    if not questions:
        raise StoryError(f"cannot read the question {sentences[-1]!r}")
    question_template, ctx = questions[0]
    return _finish(scene, ctx, int(found["a"]), start_template, question_template, steps)


def _finish(scene: _Scene, ctx: dict[str, str], start: int, start_template: str, question_template: str,
            steps: list[Step]) -> Story:
    filler = _filler(scene, ctx)
    if filler is None or "N" not in ctx:
        raise StoryError("the sentences do not agree on who or what the problem is about")
    gender = dict(_NAMES)[ctx["N"]]  # the generator picks pronouns from the name
    if ctx.pop("gender", gender) != gender:
        raise StoryError(f"the pronouns do not fit {ctx['N']}")
    friend = ctx.get("F") or next(n for n, _ in _NAMES if n != ctx["N"])
    full = {"N": ctx["N"], "F": friend, **_PRONOUNS[gender], **filler}
    story = Story(scene, full, start, start_template, question_template, steps)
    if not story.is_valid():
        raise StoryError("the numbers do not give whole, non-negative results")
    return story


def _filler(scene: _Scene, ctx: dict[str, str]) -> dict[str, str] | None:
    """The scene filler (object, or unit and verb) consistent with every word read."""
    for filler in scene.fillers:
        if all(ctx.get(k, v) == v for k, v in filler.items()):
            return filler
    return None


def solve(text: str) -> str:
    """The step-by-step solution of ``text`` in the task's format (raises :class:`StoryError`)."""
    return parse(text).solution()


def claims_hold(solution: str) -> bool:
    """True when every ``a op b = c`` claim in ``solution`` is exact integer arithmetic."""
    return all(_claim_holds(int(a), op, int(b), int(c)) for a, op, b, c in STEP_PATTERN.findall(solution))


def count_steps(solution: str) -> int:
    """Number of ``a op b = c`` calculations in a solution."""
    return len(STEP_PATTERN.findall(solution))


def scale_numbers(story: Story, factor: int) -> None:
    """Multiply the start and every added/subtracted number by ``factor``.

    Every intermediate value is then ``factor`` times the old one, so divisions stay exact and
    subtractions stay non-negative: the story gets bigger numbers without changing its shape.
    """
    story.start *= factor
    for step in story.steps:
        if step.op in "+-":
            step.b *= factor


def add_step(story: Story, rng: random.Random, op: str | None = None, max_operand: int = 20) -> bool:
    """Append one step (of ``op``, or of any operation that fits); False when none fits the current value."""
    cur = story.answer
    order = [op] if op else rng.sample(_OPS, len(_OPS))
    for candidate in order:
        b = _operand(rng, candidate, cur, max_operand)
        if b is not None:
            used = {s.template for s in story.steps}
            fresh = [t for t in story.scene.steps[candidate] if t not in used] or list(story.scene.steps[candidate])
            story.steps.append(Step(candidate, b, rng.choice(fresh)))
            return True
    return False


def _operand(rng: random.Random, op: str, cur: int, max_operand: int) -> int | None:
    """A new number for ``cur op b`` that keeps the story valid, or None (the generator's rules, but products
    of large values are allowed up to :data:`MAX_VALUE` because edited stories have bigger numbers)."""
    if op == "*":
        cap = min(9, max(2, max_operand // 2))
        return rng.randint(2, cap) if cur * cap <= MAX_VALUE else None
    b = _pick_operand(rng, op, cur, max_operand)
    return b if b is not None and _apply(op, cur, b) <= MAX_VALUE else None


def add_operation(story: Story, rng: random.Random, op: str, max_operand: int = 20) -> bool:
    """Append a step of ``op``, first adding a step that makes it possible when the value does not allow it.

    Division needs a divisor of the current value, so an addition is put first that makes the value
    divisible; subtraction needs at least 3 (so that 2 or more can be taken and some remain).
    """
    if add_step(story, rng, op, max_operand):
        return True
    cur = story.answer
    if op == "/":
        d = rng.randint(2, 9)
        b = (d - cur % d) % d or d
        b += d * rng.randint(0, max(0, (max_operand - b) // d))
        story.steps.append(Step("+", b, rng.choice(story.scene.steps["+"])))
        return add_step(story, rng, "/", max_operand) or _undo(story)
    if op == "-" and cur < 3:
        story.steps.append(Step("+", rng.randint(3, max(3, max_operand)), rng.choice(story.scene.steps["+"])))
        return add_step(story, rng, "-", max_operand) or _undo(story)
    return False


def _undo(story: Story) -> bool:
    story.steps.pop()
    return False
