"""Answer extractors, pipelines with traces, and parity with lm-evaluation-harness's GSM8K filters."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from slmkit.errors import ConfigError
from slmkit.eval.extractors import (EXTRACTORS, answer_is, answer_is_text, boxed, choice_letter, last_letter,
                                    last_list, last_number, last_yes_no, pipeline, strict_hash, trace, yes_no)


def test_rule_extractors():
    assert strict_hash("so 5\n#### 1,234\n#### 7") == "1,234"
    assert strict_hash("####5") is None and strict_hash("#### -3.5") == "-3.5"
    assert answer_is("Thus The answer is 42. Done") == "42." and answer_is("the answer is 42.") is None
    assert last_number("I have $1,000 and 3 cats, so 18.") == "18."
    assert last_number("no digits here") is None and last_number("x = 7") == "7"
    assert boxed(r"so \boxed{\frac{1}{2}} and \boxed{x^{2}}") == "x^{2}"
    assert boxed(r"\boxed{unclosed") is None
    assert answer_is_text("The answer is \\frac{3}{4}.") == "\\frac{3}{4}"
    assert choice_letter("Hmm. The answer is (C).") == "C" and choice_letter("answer is b") == "B"
    assert last_letter("A dog is a mammal, so B.") == "B" and last_letter("Option (A) wins") == "A"
    assert yes_no("So the answer is Yes.") == "yes" and last_yes_no("No way... yes") == "yes"
    assert last_list("sorted: 1, 2,3 , 10 done") == "1, 2, 3, 10"


def test_pipeline_trace_and_unknown():
    value, steps = trace(["strict_hash", "answer_is", "last_number"], "maybe 4 or 5")
    assert value == "5" and [s["extractor"] for s in steps] == ["strict_hash", "answer_is", "last_number"]
    assert steps[0]["value"] is None
    assert pipeline(["strict_hash", "last_number"])("#### 9 then 10") == "9"
    with pytest.raises(ConfigError, match="unknown extractor 'nope'"):
        pipeline(["nope"])
    assert set(EXTRACTORS) >= {"hash", "strict_hash", "answer_is", "last_number", "boxed", "choice_letter"}


def realistic_outputs(n: int, seed: int = 0) -> list[str]:
    """Varied model outputs for GSM8K: worked solutions, markers in many forms, units, money, junk."""
    rng = random.Random(seed)
    nums = ["18", "1,000", "-3", "2.5", "$42", "0.75", "1,234,567", "7.", "3/4", "50%", "1e3", "$1,200.50",
            "-0.5", "12,00", "100.", ".5", "08"]
    openers = ["", "Let's think step by step. ", "Janet sells 16 - 3 - 4 = 9 eggs. ", "First, 5 * 3 = 15. ",
               "She has $20 and spends $7.50, ", "It takes 3:30 hours. ", "Q: what? A: ", "x = 2, y = 3. ",
               "The total is 1,000,000 dollars. ", "\\(\\frac{1}{2}\\) of 10 is 5. ", "Step 1: 12/4=3\n"]
    closers = ["#### {a}", "#### {a}\n", "####{a}", "#### {a}.", "The answer is {a}.", "The answer is {a}",
               "the answer is {a}.", "The answer is: {a}.", "So the answer is {a} apples.", "{a}",
               "Answer: {a}", "\\boxed{{{a}}}", "#### {a}\n#### {b}", "The answer is {a}. #### {b}",
               "Therefore {a} + {b} = {a}.", "I am not sure.", "", "#### ", "The answer is $ {a}.",
               "{a} dollars and {b} cents", "#### {a} (approximately {b})", "The answer is {a}.\nQuestion: next"]
    out = []
    while len(out) < n:
        a, b = rng.choice(nums), rng.choice(nums)
        text = rng.choice(openers) + rng.choice(closers).format(a=a, b=b)
        if rng.random() < 0.3:
            text += rng.choice(["\n\nQuestion: How many?", " Done.", "\n", " 3 more.", "!!"])
        out.append(text)
    return out


def _lmeval_pipeline(yaml_name: str, filter_name: str):
    """The filter ensemble exactly as lm-eval builds it from its installed task YAML."""
    import lm_eval
    import yaml
    from lm_eval.filters import build_filter_ensemble

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # !function tags are irrelevant here
    config = yaml.load((Path(lm_eval.__file__).parent / "tasks/gsm8k" / yaml_name).read_text(), Loader=Loader)
    spec = next(f for f in config["filter_list"] if f["name"] == filter_name)
    components = [(step["function"], {k: v for k, v in step.items() if k != "function"}) for step in spec["filter"]]
    ensemble = build_filter_ensemble(filter_name, components)

    def run(text: str) -> str | None:
        resps: object = [[text]]
        for f in ensemble.filters:
            resps = f().apply(resps, [{}])
        value = list(resps)[0]
        return None if value == "[invalid]" else value
    return run


@pytest.mark.parametrize("yaml_name,filter_name,ours", [
    ("gsm8k.yaml", "strict-match", strict_hash),
    ("gsm8k.yaml", "flexible-extract", last_number),
    ("gsm8k-cot.yaml", "strict-match", answer_is),
    ("gsm8k-cot.yaml", "flexible-extract", last_number),
])
def test_parity_with_lm_eval(yaml_name, filter_name, ours):
    pytest.importorskip("lm_eval")
    theirs = _lmeval_pipeline(yaml_name, filter_name)
    outputs = realistic_outputs(400)
    assert len(set(outputs)) >= 200
    mismatches = [(t, ours(t), theirs(t)) for t in outputs if ours(t) != theirs(t)]
    assert not mismatches, mismatches[:5]
    parsed = sum(ours(t) is not None for t in outputs)
    assert 20 <= parsed < len(outputs)  # the sample exercises both hits and misses
