"""The built-in math language (parse, solve, edit) and the rule-based teacher that reads role prompts."""

from __future__ import annotations

import random

import pytest

from slmkit.data.tasks.math_word import generate, verify_solution
from slmkit.models.generate import GenerateConfig
from slmkit.synth import math_story
from slmkit.synth.roles import ROLES, Reject, read, render
from slmkit.synth.rule_teacher import MARK, RuleMathBackend, read_suggestions


@pytest.mark.parametrize("params", [{"min_steps": 1, "max_steps": 2, "max_operand": 20},
                                    {"min_steps": 3, "max_steps": 6, "max_operand": 80}])
def test_parse_inverts_the_generator(params):
    for row in generate(400, seed=3, **params):
        story = math_story.parse(row["prompt"])
        assert story.text() == row["prompt"]
        assert story.solution() == row["completion"]
        assert str(story.answer) == row["answer"]


def test_parse_refuses_other_languages_with_the_reason():
    with pytest.raises(math_story.StoryError, match="start sentence"):
        math_story.parse("Janet's ducks lay 16 eggs per day. How much does she make?")
    with pytest.raises(math_story.StoryError, match="step"):
        math_story.parse("Tom has 5 apples. He eats the moon. How many apples does Tom have now?")
    with pytest.raises(math_story.StoryError, match="pronouns"):  # Mia is "she" in this language
        math_story.parse("Mia has 5 apples. He buys 3 more apples. How many apples does Mia have now?")


def test_edits_keep_stories_solvable_and_grow_them():
    rng = random.Random(0)
    for row in generate(200, seed=5, max_steps=4):
        story = math_story.parse(row["prompt"])
        before = story.answer
        math_story.scale_numbers(story, 10)
        assert story.answer == 10 * before  # every intermediate value scales, divisions stay exact
        for op in "/-*+":
            assert math_story.add_operation(story, rng, op, 200)
        assert story.is_valid()
        again = math_story.parse(story.text())
        assert again.solution() == story.solution()
        assert verify_solution(story.solution(), str(story.answer))


def _ask(backend, role, context, n=1, seed=0):
    prompt = render(ROLES[role], context)
    return backend.generate([prompt], GenerateConfig(n=n, seed=seed))[0].texts


def test_rule_teacher_plays_suggester_editor_solver_from_the_prompt_text():
    teacher = RuleMathBackend()
    seed = generate(1, seed=11, min_steps=2, max_steps=2)[0]
    suggestions = read(ROLES["suggester"], _ask(teacher, "suggester", {"problem": seed["prompt"]})[0],
                       {"problem": seed["prompt"]})
    assert suggestions and not any(seed["prompt"] in s for s in suggestions)  # proposes, never writes the problem
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(suggestions, 1))
    texts = _ask(teacher, "editor", {"problem": seed["prompt"], "suggestions": listed}, n=3)
    edits = [read(ROLES["editor"], t, {"problem": seed["prompt"]}) for t in texts]
    assert len({e["problem"] for e in edits}) == 3  # samples are different edits
    for edit in edits:
        solved = read(ROLES["solver"], _ask(teacher, "solver", {"problem": edit["problem"]})[0], {"problem": edit["problem"]})
        assert solved["answer"] == edit["answer"]
        assert math_story.count_steps(solved["solution"]) > math_story.count_steps(seed["completion"])
    # deterministic per (prompt, seed, sample); another seed gives other edits
    assert _ask(teacher, "editor", {"problem": seed["prompt"], "suggestions": listed}, n=3) == texts
    assert _ask(teacher, "editor", {"problem": seed["prompt"], "suggestions": listed}, n=3, seed=1) != texts


def test_rule_teacher_reads_what_the_prompt_says_not_hidden_state():
    teacher = RuleMathBackend()
    a, b = generate(2, seed=2)
    assert _ask(teacher, "solver", {"problem": a["prompt"]})[0] == a["completion"]
    assert _ask(teacher, "solver", {"problem": b["prompt"]})[0] == b["completion"]
    # An LLM-style suggestion it understands is applied; one it does not understand is not invented.
    only_scale = _ask(teacher, "editor", {"problem": a["prompt"], "suggestions": "- Use larger numbers, 100 times larger."})[0]
    edit = read(ROLES["editor"], only_scale, {"problem": a["prompt"]})
    assert int(edit["answer"]) == 100 * int(a["answer"])
    vague = _ask(teacher, "editor", {"problem": a["prompt"], "suggestions": "1. Make it more interesting."})[0]
    assert vague.startswith(MARK)
    with pytest.raises(Reject, match="editor:no_question"):
        read(ROLES["editor"], vague, {"problem": a["prompt"]})


def test_rule_teacher_says_plainly_what_it_cannot_do():
    teacher = RuleMathBackend()
    gsm = "Janet's ducks lay 16 eggs per day. She eats three for breakfast. How many are left?"
    text = _ask(teacher, "solver", {"problem": gsm})[0]
    assert text.startswith(MARK) and "cannot read" in text
    with pytest.raises(Reject, match="solver:no_answer"):
        read(ROLES["solver"], text, {"problem": gsm})
    assert teacher.generate(["Write a poem."], GenerateConfig())[0].texts[0].startswith(MARK)


def test_suggestion_reader_understands_paraphrases():
    actions = read_suggestions("1. Add two more steps.\n2. Include a division step.\n3. Use bigger numbers.\n"
                               "4. Make the starting amount 5 times larger.\n5. Add a character.")
    assert actions == [("steps", 2), ("op", "/"), ("scale", 10), ("scale", 5)]


def test_solver_validator_catches_wrong_arithmetic():
    with pytest.raises(Reject, match="solver:wrong_step"):
        read(ROLES["solver"], "Tom has 3 + 4 = 8.\n#### 8", {"problem": "x"})
    with pytest.raises(Reject, match="solver:non_numeric_answer"):
        read(ROLES["solver"], "#### many", {"problem": "x"})
    assert read(ROLES["solver"], "3 + 4 = 7.\n#### 7\nextra chatter", {"problem": "x"})["solution"] == "3 + 4 = 7.\n#### 7"


def test_rule_verifier_judges_the_solution_it_is_shown():
    teacher = RuleMathBackend()
    row = generate(1, seed=8, min_steps=2, max_steps=2)[0]
    good = _ask(teacher, "verifier", {"problem": row["prompt"], "solution": row["completion"]})[0]
    assert read(ROLES["verifier"], good, {}) is True
    wrong_final = row["completion"].rsplit("#### ", 1)[0] + f"#### {int(row['answer']) + 1}"
    bad = _ask(teacher, "verifier", {"problem": row["prompt"], "solution": wrong_final})[0]
    assert read(ROLES["verifier"], bad, {}) is False
    with pytest.raises(Reject, match="verifier:no_verdict"):
        read(ROLES["verifier"], "Looks fine to me.", {})
