"""Tests for the built-in synthetic tasks (math word problems, ThinkSLM sorting) and their registry."""

from __future__ import annotations

import re

import pytest

from slmkit.data.tasks import TASKS, get_task
from slmkit.data.tasks import math_word, sorting
from slmkit.data.tasks.math_word import STEP_PATTERN, verify_solution


# ---------------------------------------------------------------- registry


def test_registry_resolves_lazily_to_generate_functions() -> None:
    assert set(TASKS) == {"math", "sorting", "units", "mix"}
    assert get_task("math") is math_word.generate
    assert get_task("sorting") is sorting.generate


def test_unknown_task_suggests_close_name_and_lists_known() -> None:
    with pytest.raises(KeyError) as info:
        get_task("maht")
    message = str(info.value)
    assert "did you mean 'math'" in message.lower()
    assert "math" in message and "sorting" in message


# ---------------------------------------------------------------- math


def test_math_is_deterministic_by_seed() -> None:
    assert math_word.generate(50, 7) == math_word.generate(50, 7)
    assert math_word.generate(50, 7) != math_word.generate(50, 8)


def test_math_rows_have_canonical_shape_and_distinct_prompts() -> None:
    rows = math_word.generate(300, 1)
    assert len(rows) == 300
    assert len({row["prompt"] for row in rows}) == 300
    for row in rows:
        assert set(row) == {"prompt", "completion", "answer", "meta"}
        assert row["prompt"].endswith("?")
        assert "Answer" not in row["prompt"]
        assert row["completion"].isascii()
        assert row["completion"].splitlines()[-1] == f"#### {row['answer']}"
        assert row["meta"]["task"] == "math" and row["meta"]["seed"] == 1


@pytest.mark.parametrize("max_steps", [1, 2, 3, 4, 6])
@pytest.mark.parametrize("max_operand", [2, 5, 20, 100])
def test_every_generated_solution_verifies(max_steps: int, max_operand: int) -> None:
    # 5 x 4 settings x 5 seeds x 20 rows = 2,000 problems.
    for seed in range(5):
        rows = math_word.generate(20, seed, min_steps=1, max_steps=max_steps, max_operand=max_operand)
        for row in rows:
            assert verify_solution(row["completion"], row["answer"]), row


@pytest.mark.parametrize("min_steps,max_steps", [(1, 1), (2, 2), (1, 4), (3, 5)])
def test_steps_chain_and_stay_nonnegative_integers(min_steps: int, max_steps: int) -> None:
    max_operand = 20
    for row in math_word.generate(200, 3, min_steps=min_steps, max_steps=max_steps,
                                  max_operand=max_operand):
        claims = STEP_PATTERN.findall(row["completion"])
        meta = row["meta"]
        assert min_steps <= meta["steps"] <= max_steps
        assert meta["steps"] == len(claims) == row["completion"].count("=") == len(meta["ops"])
        assert [op for _, op, _, _ in claims] == meta["ops"]
        previous = None
        for a, op, b, c in claims:
            a, b, c = int(a), int(b), int(c)
            assert a >= 0 and c >= 0
            assert 2 <= b <= max_operand  # every number the question introduces is bounded
            if op == "*":
                assert b <= 9
            assert previous is None or a == previous  # each step uses the previous result
            assert str(b) in row["prompt"]
            previous = c
        first = int(claims[0][0])
        assert 2 <= first <= max_operand and str(first) in row["prompt"]
        assert int(row["answer"]) == previous


def test_math_text_is_varied() -> None:
    rows = math_word.generate(2000, 11, min_steps=1, max_steps=2)
    words_by_op: dict[str, set[str]] = {op: set() for op in "+-*/"}
    names = set()
    for row in rows:
        names.add(row["prompt"].split()[0])
        for line in row["completion"].splitlines()[:-1]:
            match = STEP_PATTERN.search(line)
            assert match is not None
            # The phrase with numbers blanked out identifies the template.
            words_by_op[match.group(2)].add(re.sub(r"\d+", "N", line[: match.start()]))
    for op, phrasings in words_by_op.items():
        assert len(phrasings) >= 4, (op, phrasings)
    assert len(names) >= 20
    for unit in ("apples", "dollars", "km", "minutes", "stickers", "pages", "laps"):
        assert any(f" {unit}" in row["prompt"] for row in rows), unit


def test_verify_solution_rejects_corruptions() -> None:
    row = math_word.generate(1, 5, min_steps=3, max_steps=3)[0]
    completion, answer = row["completion"], row["answer"]
    assert verify_solution(completion, answer)
    lines = completion.splitlines()
    # Wrong result in the middle step.
    bad_mid = lines.copy()
    bad_mid[1] = re.sub(r"= (\d+)\.$", lambda m: f"= {int(m.group(1)) + 1}.", bad_mid[1])
    assert not verify_solution("\n".join(bad_mid), answer)
    # Wrong final line, and a wrong expected answer.
    wrong = str(int(answer) + 1)
    assert not verify_solution("\n".join(lines[:-1] + [f"#### {wrong}"]), answer)
    assert not verify_solution(completion, wrong)
    # No claims or no final line at all.
    assert not verify_solution(f"#### {answer}", answer)
    assert not verify_solution("\n".join(lines[:-1]), answer)


def test_verify_solution_checks_division_exactly_and_handles_commas() -> None:
    assert verify_solution("Split: 12 / 4 = 3.\n#### 3", "3")
    assert not verify_solution("Split: 13 / 4 = 3.\n#### 3", "3")
    assert not verify_solution("Split: 12 / 0 = 0.\n#### 0", "0")
    assert verify_solution("Total 600 * 2 = 1200.\n#### 1,200", "1,200")
    # A decimal must not be half-read as an integer claim.
    assert not verify_solution("Rate 0.5 * 4 = 2.\n#### 2", "2")


def test_math_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="max_operand"):
        math_word.generate(5, 0, max_operand=1)
    with pytest.raises(ValueError, match="max_steps"):
        math_word.generate(5, 0, min_steps=3, max_steps=2)
    with pytest.raises(ValueError, match="min_steps"):
        math_word.generate(5, 0, min_steps=0)


# ---------------------------------------------------------------- sorting


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(", ")]


def test_sorting_is_deterministic_and_distinct() -> None:
    assert sorting.generate(40, 3) == sorting.generate(40, 3)
    assert sorting.generate(40, 3) != sorting.generate(40, 4)
    rows = sorting.generate(500, 0, length=8)
    assert len({row["prompt"] for row in rows}) == 500


@pytest.mark.parametrize("length", [8, 16, 32, 5])
@pytest.mark.parametrize("signs", ["positive", "mixed"])
def test_sorting_rows_are_correct(length: int, signs: str) -> None:
    for row in sorting.generate(50, 9, length=length, signs=signs):
        prefix = "Sort these numbers in ascending order: "
        assert row["prompt"].startswith(prefix)
        values = _ints(row["prompt"][len(prefix):])
        answer = _ints(row["answer"])
        assert len(values) == length
        assert answer == sorted(values)
        assert row["completion"] == f"#### {row['answer']}"
        assert row["meta"] == {"task": "sorting", "length": length, "signs": signs, "seed": 9}
        assert all(abs(v) <= 99 for v in values)
        if signs == "positive":
            assert min(values) > 0
        else:
            assert min(values) < 0 < max(values)


def test_sorting_bad_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="signs"):
        sorting.generate(5, 0, signs="negative")
    with pytest.raises(ValueError, match="length"):
        sorting.generate(5, 0, length=1)
    with pytest.raises(ValueError, match="max_abs"):
        sorting.generate(5, 0, length=32, max_abs=10)
