"""The ``rule_math`` backend: a RULE-BASED teacher (not a language model) for the built-in math task.

It answers the prompts of the Orca-Math roles (``synth/roles.py``) by reading them, so the same pipeline
runs unchanged with an LLM backend: the prompt's first line names the role ("You are the Suggester.") and
its labelled sections carry the problem and the suggestions. Everything it knows comes from that text.

* **Suggester**: parses the problem (``synth/math_story.py``) and proposes, without writing the new
  problem, how to make it harder: more steps, an operation the problem does not use yet, bigger numbers.
* **Editor**: parses the problem *and* the suggestion lines it can understand ("add 2 more steps",
  "a step that uses division", "bigger numbers ... 10 times larger"), applies them to the story and writes
  the new problem followed by its step-by-step solution (the reference answer).
* **Solver**: parses the problem and writes the solution in GSM8K format ("words a op b = c." lines and
  "#### answer"). Problems outside the built-in math language get a reply without an answer, which the
  pipeline rejects and counts.
* **Verifier**: re-solves the problem and calls a solution correct when every step holds and its final
  answer is the problem's.

Samples are deterministic: sample ``i`` of a prompt draws from a generator seeded by (prompt, seed, i), so
``n`` Editor samples are different edits and a re-run gives the same text. Its ``name`` and
``provenance`` mark every row it produced as rule-based.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import Any

from slmkit.synth import math_story
from slmkit.synth.math_story import OP_NAMES, StoryError

_ROLE_LINE = re.compile(r"You are the ([A-Za-z ]+?)\.")
_LABEL = re.compile(r"^(Problem|Suggestions|New problem|Solution|Verdict):[ \t]*", re.MULTILINE)
_WORD_NUMBERS = {"a": 1, "an": 1, "one": 1, "another": 1, "two": 2, "three": 3}
_OP_OF = {name: op for op, name in OP_NAMES.items()}
MARK = "[rule_math]"


class RuleMathBackend:
    """Rule-based Suggester/Editor/Solver for the built-in math task (see the module docstring)."""

    rule_based = True

    def __init__(self, factors: list[int] | None = None, max_added_steps: int = 2):
        self.factors = list(factors or [5, 10])
        self.max_added_steps = max_added_steps
        # The name keys the answer cache, so settings that change answers are part of it.
        custom = self.factors != [5, 10] or max_added_steps != 2
        self.name = f"rule_math[factors={self.factors},max_added_steps={max_added_steps}]" if custom else "rule_math"
        self.provenance = {"kind": "rule_math", "rule_based": True,
                           "note": "rule-based teacher for the built-in math task, not a language model"}

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        from slmkit.models.generate import Generation, cut_at_stop

        out = []
        for prompt in prompts:
            texts = [cut_at_stop(self.respond(prompt, _rng(prompt, cfg.seed, i)), list(cfg.stop)) for i in range(cfg.n)]
            out.append(Generation(prompt, texts, [len(t.split()) for t in texts]))
        return out

    def respond(self, prompt: str, rng: random.Random) -> str:
        """The reply to one prompt."""
        role = _ROLE_LINE.search(prompt)
        handler = {"suggester": self.suggest, "editor": self.edit, "solver": self.solve,
                   "verifier": self.verify}.get(
            role.group(1).strip().lower() if role else "")
        if handler is None:
            return f"{MARK} this prompt asks for no role the rule-based math teacher plays"
        sections = read_sections(prompt)
        if not sections.get("problem"):
            return f"{MARK} the prompt has no 'Problem:' section"
        try:
            return handler(sections, rng)
        except StoryError as err:
            return f"{MARK} cannot read this problem: {err}"

    def suggest(self, sections: dict[str, str], rng: random.Random) -> str:
        story = math_story.parse(sections["problem"])
        more = rng.randint(1, self.max_added_steps)
        lines = [f"Add {more} more step{'s' if more > 1 else ''}, each one using the result of the step before."]
        unused = [op for op in OP_NAMES if op not in {s.op for s in story.steps}]
        if unused:
            lines.append(f"Add a step that uses {OP_NAMES[rng.choice(unused)]}, "
                         "an operation the problem does not use yet.")
        if max(story.values()) < 1000:
            lines.append(f"Use bigger numbers: make the starting amount {rng.choice(self.factors)} times larger.")
        return "\n".join(f"{i}. {line}" for i, line in enumerate(lines, start=1))

    def edit(self, sections: dict[str, str], rng: random.Random) -> str:
        story = math_story.parse(sections["problem"])
        actions = read_suggestions(sections.get("suggestions", ""))
        if not actions:
            return f"{MARK} none of the suggestions is one the rule-based editor can apply"
        before = len(story.steps)
        # Bigger numbers first, so that the steps added next are sized like the new quantities.
        for kind, value in sorted(actions, key=lambda a: a[0] != "scale"):
            if kind == "scale":
                math_story.scale_numbers(story, value)
            elif kind == "op":
                math_story.add_operation(story, rng, value, _operand_cap(story))
            else:
                for _ in range(value):
                    math_story.add_step(story, rng, None, _operand_cap(story))
        if len(story.steps) == before and not any(kind == "scale" for kind, _ in actions):
            return f"{MARK} the suggestions could not be applied to this problem"
        return f"{story.text()}\n\nSolution:\n{story.solution()}"

    def solve(self, sections: dict[str, str], rng: random.Random) -> str:
        return math_story.solve(sections["problem"])

    def verify(self, sections: dict[str, str], rng: random.Random) -> str:
        """Correct when every step holds and the final answer is the one the problem's story gives."""
        from slmkit.eval.extractors import extract_hash, is_correct

        solution = sections.get("solution", "")
        expected = math_story.parse(sections["problem"]).answer
        good = math_story.claims_hold(solution) and is_correct(extract_hash(solution), str(expected))
        return f"Verdict: {'correct' if good else 'incorrect'}"


def _rng(prompt: str, seed: int, sample: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}\x00{sample}\x00{prompt}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _operand_cap(story: math_story.Story) -> int:
    """New numbers are sized like the story's own (a story about 500 dollars does not add 3 dollars)."""
    return max(20, min(1000, max(story.values()) // 4))


def read_sections(prompt: str) -> dict[str, str]:
    """Labelled sections of a prompt ("Problem: ..." up to the next label), keyed in lower case."""
    pieces = _LABEL.split(prompt)
    return {pieces[i].lower(): pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}


def read_suggestions(text: str) -> list[tuple[str, int | str]]:
    """The suggestions the rule-based editor understands: ("scale", factor), ("op", op), ("steps", count)."""
    actions: list[tuple[str, int | str]] = []
    for line in text.lower().splitlines():
        op = re.search(r"\b(addition|subtraction|multiplication|division)\b", line)
        times = re.search(r"\b(\d+) times (?:larger|bigger)\b", line)
        steps = re.search(r"\badd (\d+|an?|one|two|three|another)(?: more| extra| additional)? steps?\b", line)
        if times or re.search(r"\b(?:bigger|larger) numbers?\b", line):
            actions.append(("scale", min(100, max(2, int(times.group(1)))) if times else 10))
        elif op:
            actions.append(("op", _OP_OF[op.group(1)]))
        elif steps:
            word = steps.group(1)
            actions.append(("steps", min(3, int(word) if word.isdigit() else _WORD_NUMBERS[word])))
    return actions
