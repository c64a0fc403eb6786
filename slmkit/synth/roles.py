"""Agent roles for synthetic data: a role is a prompt template, an output parser and a validator.

``ROLES`` maps a role name to a :class:`Role`. ``render`` fills the template (``str.format`` fields) from a
context; ``read`` parses a teacher's output and validates it against the same context, raising
:class:`Reject` with a short reason code (``"editor:unchanged"``) that pipelines count. Parsers turn text
into values; validators judge the values (the edited problem differs from its parent, every
``a op b = c`` step holds, the JSON object follows its schema).

Roles of Orca-Math (Mitra et al. 2024, arXiv 2402.14830, section 3.2): the *Suggester* proposes ways to
make a problem harder without writing it, the *Editor* rewrites the problem with those suggestions (and
may solve it, giving a reference answer), the *Solver* answers step by step in GSM8K format, and an
optional *Verifier* accepts or rejects a problem with its solution. Roles of a
MediFlow-style generator (MediPhi, Corbeil et al. 2025, arXiv 2505.10717): the *instruction writer*
drafts a synthetic clinical document and a task instruction on it, the *responder* answers in the required
output format (JSON checked against a JSON schema), the *judge* grades the answer 1-5.

The built-in templates open with "You are the <Role>." and label their sections ("Problem:",
"Suggestions:"), which is also what the rule-based teacher reads. Nothing is read or written here.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from slmkit.errors import ConfigError


class Reject(Exception):
    """A teacher output that a role cannot use; ``reason`` is a short code such as ``solver:no_answer``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Role:
    """Prompt template + output parser + validator (``validate`` raises :class:`Reject` or returns None)."""

    name: str
    template: str
    parse: Callable[[str, dict[str, Any]], Any]
    validate: Callable[[Any, dict[str, Any]], None] | None = None

    @property
    def fields(self) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(self.template) if f}


def render(role: Role, context: dict[str, Any]) -> str:
    """The prompt of ``role`` for ``context``; a field the context lacks is a config error naming it."""
    missing = role.fields - set(context)
    if missing:
        raise ConfigError(f"role '{role.name}': template field(s) {sorted(missing)} have no value")
    return role.template.format(**{k: context[k] for k in role.fields})


def read(role: Role, text: str, context: dict[str, Any]) -> Any:
    """Parse and validate one output of ``role``; raises :class:`Reject`."""
    value = role.parse(text, context)
    if role.validate is not None:
        role.validate(value, context)
    return value


# ---- Orca-Math ----------------------------------------------------------------------------------------

SUGGESTER = """You are the Suggester. Read the math word problem below and propose up to three specific ways \
to make it harder to solve, for example more steps, bigger numbers, or an operation it does not use yet. \
Do not write the new problem and do not solve anything: list only the suggestions, one per line, numbered.

Problem: {problem}

Suggestions:"""

EDITOR = """You are the Editor. Rewrite the math word problem below into a harder problem by applying the \
suggestions. The new problem must be self-contained and have one whole-number answer. After it, write \
"Solution:" and solve the new problem step by step, one calculation per line written as "a op b = c.", \
then a last line "#### <answer>".

Problem: {problem}

Suggestions:
{suggestions}

New problem:"""

SOLVER = """You are the Solver. Solve the math word problem below step by step. Write one calculation per \
line as "a op b = c." and end with a line "#### <answer>".

Problem: {problem}

Solution:"""

VERIFIER = """You are the Verifier. Check the math word problem and the solution below. The problem must be \
self-contained with one whole-number answer, and every step of the solution must be correct. Reply with \
one line: "Verdict: correct" or "Verdict: incorrect".

Problem: {problem}

Solution:
{solution}

Verdict:"""

_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*\u2022])\s+(.*\S)\s*$")
_SOLUTION_LABEL = re.compile(r"^\s*Solution:[ \t]*", re.MULTILINE)
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


def parse_suggestions(text: str, context: dict[str, Any]) -> list[str]:
    """The numbered or bulleted lines of a Suggester output."""
    items = [m.group(1) for line in text.splitlines() if (m := _LIST_ITEM.match(line))]
    if not items:
        raise Reject("suggester:no_suggestions", text[:120])
    return items


def validate_suggestions(items: list[str], context: dict[str, Any]) -> None:
    # The Suggester must not do the Editor's or the Solver's job (Orca-Math: "without creating the problem").
    if any("####" in s for s in items):
        raise Reject("suggester:wrote_solution")


def parse_edit(text: str, context: dict[str, Any]) -> dict[str, str | None]:
    """``{"problem", "solution", "answer"}`` from an Editor output; the solution part is optional."""
    from slmkit.eval.extractors import extract_hash, normalize

    parts = _SOLUTION_LABEL.split(text, maxsplit=1)
    problem = re.sub(r"^\s*New problem:\s*", "", parts[0])
    problem = " ".join(problem.split())
    solution = parts[1].strip() if len(parts) > 1 else None
    answer = extract_hash(solution) if solution else None
    if not problem:
        raise Reject("editor:no_problem", text[:120])
    return {"problem": problem, "solution": solution, "answer": normalize(answer) if answer else None}


def validate_edit(edit: dict[str, str | None], context: dict[str, Any]) -> None:
    problem = str(edit["problem"])
    if " ".join(problem.lower().split()) == " ".join(str(context["problem"]).lower().split()):
        raise Reject("editor:unchanged")
    if len(problem.split()) < 8:
        raise Reject("editor:too_short", problem)
    if "?" not in problem:  # a word problem asks something; refusals and notes do not
        raise Reject("editor:no_question", problem[:120])


def parse_solution(text: str, context: dict[str, Any]) -> dict[str, str]:
    """``{"solution", "answer"}``: the text up to and including its first ``#### answer`` line."""
    from slmkit.eval.extractors import normalize

    match = re.search(r"####[ \t]*([^\n]*\S)", text)
    if match is None:
        raise Reject("solver:no_answer", text[:120])
    return {"solution": text[:match.end()].strip(), "answer": normalize(match.group(1))}


def validate_solution(parsed: dict[str, str], context: dict[str, Any]) -> None:
    from slmkit.synth.math_story import claims_hold

    if not _NUMBER.match(parsed["answer"]):
        raise Reject("solver:non_numeric_answer", parsed["answer"])
    if not claims_hold(parsed["solution"]):
        raise Reject("solver:wrong_step")


def parse_verdict(text: str, context: dict[str, Any]) -> bool:
    """True for "correct", False for "incorrect" (the first of the two words in the output)."""
    match = re.search(r"\b(incorrect|correct)\b", text.lower())
    if match is None:
        raise Reject("verifier:no_verdict", text[:120])
    return match.group(1) == "correct"


# ---- MediFlow-style instructions with JSON outputs ---------------------------------------------------

INSTRUCTION_WRITER = """You are the Instruction writer. Write training data for a clinical language model.
First write a realistic, entirely fictional {document_type} (invent every name, date and number; no real \
patient). Then write one instruction that asks to perform this task on the document: {task_description}

Reply in exactly this layout:
Document:
<the document>

Instruction:
<the instruction>"""

RESPONDER = """You are the Responder. {instruction}

Document:
{document}

{format_requirements}{feedback}

Answer:"""

JUDGE = """You are the Judge. Grade how well the answer performs the instruction on the document: correct, \
complete, faithful to the document, in the required format. Reply with one line "Score: <1-5>".

Instruction: {instruction}

Document:
{document}

Answer:
{answer}

Score:"""

_SECTION = re.compile(r"^(Document|Instruction):[ \t]*", re.MULTILINE)


def parse_instruction(text: str, context: dict[str, Any]) -> dict[str, str]:
    """``{"document", "instruction"}`` from the writer's two labelled sections."""
    pieces = _SECTION.split(text)
    found = {pieces[i].lower(): pieces[i + 1].strip() for i in range(1, len(pieces) - 1, 2)}
    if not found.get("document") or not found.get("instruction"):
        raise Reject("writer:missing_section", text[:120])
    return {"document": found["document"], "instruction": found["instruction"]}


def validate_instruction(parsed: dict[str, str], context: dict[str, Any]) -> None:
    if len(parsed["document"].split()) < 20:
        raise Reject("writer:document_too_short")
    if len(parsed["instruction"].split()) < 4:
        raise Reject("writer:instruction_too_short")


def parse_answer(text: str, context: dict[str, Any]) -> Any:
    """A JSON value (``output_format == "json"``: code fences and text around the object are dropped) or text."""
    text = text.strip()
    if context.get("output_format") != "json":
        if not text:
            raise Reject("responder:empty")
        return text
    body = re.sub(r"^```(?:json)?\s*|\s*```$", "", text)
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise Reject("responder:no_json_object", text[:120])
    try:
        return json.loads(body[start:end + 1])
    except json.JSONDecodeError as err:
        raise Reject("responder:invalid_json", f"{err.msg} at character {err.pos}") from None


def validate_answer(value: Any, context: dict[str, Any]) -> None:
    """JSON answers must follow ``context["schema"]``; list answers need bullet lines."""
    fmt = context.get("output_format")
    if fmt == "json":
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(context["schema"]).iter_errors(value))
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise Reject(f"responder:schema_{error.validator}", f"at {where}: {error.message}")
    elif fmt == "bullets" and not any(_LIST_ITEM.match(line) for line in str(value).splitlines()):
        raise Reject("responder:no_bullets")


def parse_score(text: str, context: dict[str, Any]) -> int:
    match = re.search(r"\b([1-5])\b", text)
    if match is None:
        raise Reject("judge:no_score", text[:80])
    return int(match.group(1))


ROLES: dict[str, Role] = {
    "suggester": Role("suggester", SUGGESTER, parse_suggestions, validate_suggestions),
    "editor": Role("editor", EDITOR, parse_edit, validate_edit),
    "solver": Role("solver", SOLVER, parse_solution, validate_solution),
    "verifier": Role("verifier", VERIFIER, parse_verdict),
    "instruction_writer": Role("instruction_writer", INSTRUCTION_WRITER, parse_instruction, validate_instruction),
    "responder": Role("responder", RESPONDER, parse_answer, validate_answer),
    "judge": Role("judge", JUDGE, parse_score),
}


def get_roles(overrides: dict[str, str]) -> dict[str, Role]:
    """The registry with template overrides applied (text, or a path to a text file); fields are checked."""
    from pathlib import Path

    roles = dict(ROLES)
    for name, template in overrides.items():
        if name not in roles:
            raise ConfigError(f"templates: unknown role '{name}' (roles: {', '.join(ROLES)})")
        if "\n" not in template and Path(template).is_file():
            template = Path(template).read_text(encoding="utf-8")
        new = replace(roles[name], template=template)
        extra = new.fields - roles[name].fields
        if extra:
            raise ConfigError(f"templates.{name}: unknown field(s) {sorted(extra)} "
                              f"(available: {sorted(roles[name].fields)})")
        roles[name] = new
    return roles
