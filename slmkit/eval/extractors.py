"""Answer extractors: each is a function ``str -> str | None`` (None = nothing parseable), in a plain dict.

Strict extractors need the answer in a declared format; flexible ones take what a model most likely
meant. The GSM8K pair reproduces lm-evaluation-harness 0.4.13 exactly (tasks/gsm8k/gsm8k.yaml and
gsm8k-cot.yaml, ``regex`` filter + ``take_first``), so numbers are comparable with published results:

- ``strict_hash``: first ``#### n`` (lm-eval ``strict-match`` of gsm8k).
- ``answer_is``: first "The answer is n." (lm-eval ``strict-match`` of gsm8k-cot).
- ``last_number``: last match of ``(-?[$0-9.,]{2,})|(-?[0-9]+)`` (lm-eval ``flexible-extract``).

Others: ``hash`` (text after the last ``####``, any answer such as a sorted list), ``answer_is_text``
(free text after "The answer is"), ``boxed`` (last ``\\boxed{...}``, braces balanced), ``choice_letter``
(strict "answer is (C)") and ``last_letter`` (flexible: last standalone option letter), ``yes_no`` and
``last_yes_no``, ``last_list`` (last comma-separated run of integers). ``pipeline`` chains extractors:
the first that parses wins, and ``trace`` records each step. ``normalize``/``is_correct`` make answers
comparable; ``slmkit.eval.metrics`` holds the typed comparisons (numeric tolerance, LaTeX).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
# lm-evaluation-harness 0.4.13 gsm8k.yaml / gsm8k-cot.yaml filter_list, verbatim.
LMEVAL_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")
LMEVAL_ANSWER_IS = re.compile(r"The answer is (\-?[0-9\.\,]+).")
LMEVAL_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")
_ANSWER_IS_TEXT = re.compile(r"[Tt]he (?:final )?answer is[:\s]*(.+)")
_CHOICE_STRICT = re.compile(r"answer is[:\s]*\(?([A-E])\)?(?![A-Za-z])", re.IGNORECASE)
_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-E])\)?(?![A-Za-z'])")
_YES_NO_STRICT = re.compile(r"answer is[:\s]*(yes|no)\b", re.IGNORECASE)
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
_INT_LIST = re.compile(r"-?\d+(?:\s*,\s*-?\d+)+")


def _regex_take_first(regex: re.Pattern[str], text: str, group_select: int) -> str | None:
    """lm-eval's RegexFilter: findall, pick one match, first non-empty group, strip; None = "[invalid]"."""
    matches = regex.findall(text)
    if not matches:
        return None
    match = matches[group_select]
    if isinstance(match, tuple):
        match = next((m for m in match if m), None)
        if match is None:
            return None
    return match.strip()


def strict_hash(text: str) -> str | None:
    """The number after the first ``#### `` (lm-eval gsm8k ``strict-match``)."""
    return _regex_take_first(LMEVAL_STRICT, text, 0)


def answer_is(text: str) -> str | None:
    """The number in the first "The answer is n." (lm-eval gsm8k-cot ``strict-match``)."""
    return _regex_take_first(LMEVAL_ANSWER_IS, text, 0)


def last_number(text: str) -> str | None:
    """The last number-like span (lm-eval gsm8k ``flexible-extract``); may keep "$" or "," — see normalize."""
    return _regex_take_first(LMEVAL_FLEXIBLE, text, -1)


def extract_hash(text: str) -> str | None:
    """The answer after the last ``####`` marker up to the end of its line, or None."""
    if "####" not in text:
        return None
    answer = text.rsplit("####", 1)[1].strip().splitlines()
    return answer[0].strip() if answer and answer[0].strip() else None


def answer_is_text(text: str) -> str | None:
    """Free text after the last "The answer is", up to the end of its line, minus a final period."""
    found = _ANSWER_IS_TEXT.findall(text)
    if not found:
        return None
    answer = found[-1].strip().rstrip(".").strip().strip("$").strip()
    return answer or None


def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with nested braces balanced."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[open_at + 1:i].strip() or None
    return None


def choice_letter(text: str) -> str | None:
    """Option letter in the first "answer is (C)" / "answer is C"."""
    found = _CHOICE_STRICT.search(text)
    return found.group(1).upper() if found else None


def last_letter(text: str) -> str | None:
    """The last standalone capital option letter A–E ("(B)", "B.", "B"); "A" as an article is skipped."""
    for match in reversed(list(_LETTER.finditer(text))):
        letter = match.group(1)
        after = text[match.end():match.end() + 2]
        if letter == "A" and "(" not in match.group(0) and re.match(r" [a-z]", after):
            continue  # "A dog ..." is an article, not option A
        return letter
    return None


def yes_no(text: str) -> str | None:
    """"yes"/"no" in the first "answer is yes"."""
    found = _YES_NO_STRICT.search(text)
    return found.group(1).lower() if found else None


def last_yes_no(text: str) -> str | None:
    """The last standalone yes/no word."""
    found = _YES_NO.findall(text)
    return found[-1].lower() if found else None


def last_list(text: str) -> str | None:
    """The last run of comma-separated integers, re-joined as "a, b, c"."""
    found = _INT_LIST.findall(text)
    if not found:
        return None
    return ", ".join(part.strip() for part in found[-1].split(","))


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
    "strict_hash": strict_hash,
    "answer_is": answer_is,
    "answer_is_text": answer_is_text,
    "last_number": last_number,
    "boxed": boxed,
    "choice_letter": choice_letter,
    "last_letter": last_letter,
    "yes_no": yes_no,
    "last_yes_no": last_yes_no,
    "last_list": last_list,
}


def trace(names: list[str], text: str) -> tuple[str | None, list[dict]]:
    """Run extractors in order until one parses; returns (answer, [{"extractor", "value"}, ...])."""
    steps = []
    for name in names:
        value = EXTRACTORS[name](text)
        steps.append({"extractor": name, "value": value})
        if value is not None:
            return value, steps
    return None, steps


def pipeline(names: list[str]) -> Callable[[str], str | None]:
    """An extractor that tries ``names`` in order (unknown names fail here, not mid-run)."""
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        from slmkit.errors import ConfigError

        raise ConfigError(f"unknown extractor '{unknown[0]}' (known: {', '.join(EXTRACTORS)})")
    return lambda text: trace(names, text)[0]
