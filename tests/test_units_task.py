"""The units task (QA + documents), documents of math and sorting, and the mix task."""

from __future__ import annotations

import re

import pytest

from slmkit.data.tasks import TASKS, get_documents, get_task
from slmkit.data.tasks.units import FACTORS, documents, generate, verify_solution


@pytest.mark.parametrize("params", [{}, {"max_steps": 3, "max_value": 30}, {"families": ["time"], "max_value": 40},
                                    {"families": "us", "max_steps": 2}])
def test_every_answer_is_verified(params):
    rows = generate(200, seed=1, **params)
    assert len({r["prompt"] for r in rows}) == 200
    for row in rows:
        assert verify_solution(row["completion"], row["answer"]), row
        assert row["completion"].endswith(f"#### {row['answer']}")
    assert {r["meta"]["direction"] for r in rows} == {"up", "down"}


def test_answers_match_an_independent_computation():
    """Convert through a common base unit (seconds, millimetres, inches) instead of the step table."""
    from slmkit.data.tasks.units import QUESTIONS

    unit = {"wk": 7 * 24 * 3600, "d": 24 * 3600, "h": 3600, "min": 60, "s": 1, "km": 10 ** 6, "m": 1000,
            "cm": 10, "mm": 1, "mi": 63360, "yd": 36, "ft": 12, "in": 1}
    patterns = [re.compile("^" + re.escape(q).replace(r"\{v\}", r"(?P<v>\d+)").replace(r"\{a\}", r"(?P<a>\S+)")
                           .replace(r"\{b\}", r"(?P<b>\S+)") + "$") for q in QUESTIONS]
    rows = generate(400, seed=3, families=["time", "length", "us"], max_steps=3)
    for row in rows:
        m = next(p.match(row["prompt"]) for p in patterns if p.match(row["prompt"]))
        if m["a"] in unit and m["b"] in unit:
            assert int(m["v"]) * unit[m["a"]] == int(row["answer"]) * unit[m["b"]], row["prompt"]
    assert sum(re.search(r" (gal|qt|pt|lb|oz)\b", r["prompt"]) is None for r in rows) > 250


def test_wrong_solutions_are_rejected():
    good = "1 h = 60 min, so 3 h = 3 * 60 = 180 min.\n#### 180"
    assert verify_solution(good, "180")
    for bad in (good.replace("= 180", "= 190").replace("#### 180", "#### 190"),  # arithmetic
                good.replace("60", "100"),  # a false fact
                good.replace("#### 180", "#### 181"),  # final answer
                "1 h = 60 min, so 3 h = 3 * 60 = 180 min.\n1 min = 60 s, so 18 min = 18 * 60 = 1080 s.\n#### 1080"):
        assert not verify_solution(bad, bad.rsplit("#### ", 1)[1])


def test_one_wording_per_question():
    """Distinct prompts are distinct questions: a test question never reappears reworded in training."""
    rows = generate(380, seed=0, families=["time", "us"], max_value=20)  # every one-step question there is
    questions = {re.sub(r"^(Convert|How many|Express)|[?.]$", "", r["prompt"]) for r in rows}
    keys = {(r["answer"], r["completion"].split("\n")[0]) for r in rows}
    assert len(keys) == 380 and len(questions) <= 380


def test_deterministic_by_seed_and_checked_params():
    assert generate(50, seed=4) == generate(50, seed=4) != generate(50, seed=5)
    assert documents(20, seed=4) == documents(20, seed=4)
    with pytest.raises(ValueError, match="families"):
        generate(5, seed=0, families=["speed"])
    with pytest.raises(ValueError, match="distinct"):
        generate(1000, seed=0, families=["volume"], max_value=3)


def test_documents_state_true_facts_and_answer_no_one_step_question():
    docs = documents(60, seed=2, max_value=20)
    example = re.compile(r"(\d+) (\S+) = (\d+) ([*/]) (\d+) = (\d+) (\S+)\.")
    for doc in docs:
        assert doc["prompt"] == "" and doc["meta"]["kind"] == "document"
        found = example.findall(doc["completion"])
        assert found
        for value, a, v2, op, factor, result, b in found:
            big, small = (a, b) if op == "*" else (b, a)
            assert FACTORS[(big, small)] == int(factor) and value == v2
            assert (int(value) * int(factor) if op == "*" else int(value) // int(factor)) == int(result)
            big_value = int(value) if op == "*" else int(result)
            assert big_value > 20  # beyond every question's range: the documents never answer a question
    assert {d["meta"]["fact"] for d in docs} >= {"h->min", "km->m", "lb->oz"}


def test_math_and_sorting_documents_skip_held_out_questions():
    math_rows = get_task("math")(30, seed=1, max_steps=1, max_operand=5)
    held = frozenset(r["prompt"] for r in math_rows)
    docs = get_documents("math")(200, seed=0, max_steps=1, max_operand=5, exclude=held)
    assert len(docs) == 200 and not any(p in d["completion"] for d in docs for p in held)
    sort_rows = get_task("sorting")(20, seed=1, length=3, max_abs=9)
    held = frozenset(r["prompt"] for r in sort_rows)
    docs = get_documents("sorting")(100, seed=0, length=3, max_abs=9, exclude=held)
    lists = {p.rsplit(": ", 1)[1] for p in held}
    assert len(docs) == 100 and not any(f"the list {lst}." in d["completion"] for d in docs for lst in lists)


def test_mix_splits_by_weight_and_keeps_each_task_verified():
    from slmkit.data.tasks.math_word import verify_solution as verify_math

    assert "units" in TASKS and "mix" in TASKS
    tasks = {"math": {"weight": 2, "params": {"max_steps": 1}}, "units": {"params": {"max_value": 9}},
             "sorting": {"weight": 1, "params": {"length": 4}}}
    rows = get_task("mix")(40, seed=0, tasks=tasks)
    kinds = [r["meta"]["task"] for r in rows]
    assert (kinds.count("math"), kinds.count("units"), kinds.count("sorting")) == (20, 10, 10)
    assert rows == get_task("mix")(40, seed=0, tasks=tasks)
    assert all(verify_math(r["completion"], r["answer"]) for r in rows if r["meta"]["task"] == "math")
    assert all(verify_solution(r["completion"], r["answer"]) for r in rows if r["meta"]["task"] == "units")
    docs = get_documents("mix")(9, seed=0, tasks=tasks)
    assert len(docs) == 9 and {d["meta"]["task"] for d in docs} == {"math", "units", "sorting"}
    with pytest.raises(ValueError, match="weight"):
        get_task("mix")(5, seed=0, tasks={"math": {"weight": 0}})


def test_data_stage_writes_documents(tmp_path):
    from slmkit.artifacts import read_jsonl
    from slmkit.cli import main

    runs = str(tmp_path / "runs")
    assert main(["data", "task=units", "n_train=20", "n_val=5", "n_test=5", "documents=7", "--runs-dir", runs]) == 0
    folder = tmp_path / "runs" / "data" / "00_data"
    assert len(read_jsonl(folder / "documents.jsonl")) == 7
    assert main(["data", "task=math", "n_train=5", "n_val=1", "n_test=1", "--runs-dir", runs, "--name", "m"]) == 0
    assert (tmp_path / "runs" / "m" / "00_data" / "documents.jsonl").read_text() == ""
    assert main(["data", "task=units", "n_train=5", "n_val=1", "n_test=1", "params={families: [speed]}",
                 "--runs-dir", runs, "--name", "bad"]) == 2
