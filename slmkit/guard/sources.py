"""Readers for the public prompt sets a guard learns from, each read in place from the shared data folder.

Every source yields ``(text, category)`` pairs and carries one label: ``refuse`` (should not be answered)
or ``comply`` (should be answered). The label is the data set's own (see each ``SOURCE.md`` under
``shared/data``): harmful request sets are ``refuse``; ordinary instructions and the over-refusal sets
(prompts that look unsafe but are fine: OR-Bench Hard-1K / 80K, CoCoNot contrast sets, OKTest, PHTest,
the safe half of Safety-Tuned LLaMAs' PhysicalSafety, CyberSecEval MITRE FRR) are ``comply``.
XSTest is ``EVAL_ONLY``: the data builder never puts it in a training or calibration split.
Licences differ (several are CC BY-NC 4.0, OKTest's is unclear): ``LICENCES`` keeps them visible.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import DataError

Pairs = Iterator[tuple[str, str]]


@dataclass(frozen=True)
class Source:
    """One prompt set: where it lives, how to read it, its label and licence."""

    folder: str
    read: Callable[[Path], Pairs]
    label: str
    licence: str


def _csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        raise DataError(f"{path}: not found (is the shared data folder complete?)")
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _json(path: Path):
    if not path.exists():
        raise DataError(f"{path}: not found (is the shared data folder complete?)")
    return json.loads(path.read_text(encoding="utf-8"))


def _jsonl(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError(f"{path}: not found (is the shared data folder complete?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _table(load: Callable[[Path], list[dict]], files: str | tuple[str, ...], text: str, category: str = "",
           keep: Callable[[dict], bool] | None = None) -> Callable[[Path], Pairs]:
    """A reader of one column (and optionally a category column) from table-like files of a folder."""
    def read(d: Path) -> Pairs:
        for name in (files,) if isinstance(files, str) else files:
            for r in load(d / name):
                if keep is None or keep(r):
                    yield r[text], r[category] if category else ""
    return read


def _stl(names: tuple[str, ...]) -> Callable[[Path], Pairs]:
    def read(d: Path) -> Pairs:
        for name in names:
            for text in _json(d / f"{name}.json")["instructions"]:
                yield text, name
    return read


# Standard HarmBench behaviours only: copyright ones ask for lyrics, contextual ones need a context string.
_harmbench = _table(_csv, "harmbench_behaviors_text_all.csv", "Behavior", "SemanticCategory",
                    keep=lambda r: r["FunctionalCategory"] == "standard")


def _coconot(name: str, unsafe_only: bool) -> Callable[[Path], Pairs]:
    # CoCoNot's noncompliance also covers unanswerable-but-harmless requests (underspecified, humanising,
    # ...); only its safety category is "should not be answered" for a guard.
    keep = (lambda r: r["category"] == "Requests with safety concerns") if unsafe_only else None
    return _table(_jsonl, name, "prompt", "subcategory", keep=keep)


def _xstest(label: str) -> Callable[[Path], Pairs]:
    return _table(_csv, "xstest_prompts.csv", "prompt", "type", keep=lambda r: r["label"] == label)


SOURCES: dict[str, Source] = {
    # should not be answered
    "do_not_answer": Source("do_not_answer", _table(_csv, "do_not_answer_en.csv", "question", "types_of_harm"),
                            "refuse", "Apache-2.0"),
    "advbench": Source("advbench", _table(_csv, "harmful_behaviors.csv", "goal"), "refuse", "MIT"),
    "harmbench": Source("harmbench", _harmbench, "refuse", "MIT"),
    "or_bench_toxic": Source("or_bench", _table(_csv, "or-bench-toxic.csv", "prompt", "category"), "refuse",
                             "CC BY 4.0"),
    "coconot_unsafe": Source("coconot", _coconot("coconot_eval.jsonl", True), "refuse", "MIT"),
    "stl_unsafe": Source("safety_tuned_llamas_eval", _stl(("I-PhysicalSafetyUnsafe", "I-MaliciousInstructions",
                         "I-CoNa", "I-Controversial")), "refuse", "CC BY-NC 4.0 (SafeText MIT)"),
    "gptfuzz_questions": Source("jailbreak_templates_gptfuzz", _table(_csv, "question_list.csv", "text"), "refuse",
                                "MIT"),
    # should be answered: ordinary instructions and questions
    "alpaca": Source("alpaca_instructions", _table(_json, "alpaca_no_input_first5000.json", "instruction"),
                     "comply", "CC BY-NC 4.0"),
    "stl_alpaca": Source("safety_tuned_llamas_eval", _stl(("I-Alpaca",)), "comply", "CC BY-NC 4.0"),
    "gsm8k": Source("gsm8k", _table(_jsonl, "test.jsonl", "question"), "comply", "MIT"),
    "arc_challenge": Source("arc_challenge", _table(_jsonl, "arc_challenge_test.jsonl", "question"), "comply",
                            "CC BY-SA 4.0"),
    # should be answered: hard negatives that look unsafe
    "or_bench_hard": Source("or_bench", _table(_csv, "or-bench-hard-1k.csv", "prompt", "category"), "comply",
                            "CC BY 4.0"),
    "or_bench_80k": Source("or_bench", _table(_csv, "or-bench-80k-subset1000.csv", "prompt", "category"),
                           "comply", "CC BY 4.0"),
    "coconot_contrast": Source("coconot", _coconot("coconot_contrast_eval.jsonl", False), "comply", "MIT"),
    "coconot_pref": Source("coconot", _coconot("coconot_pref_prompts.jsonl", False), "comply", "MIT"),
    "oktest": Source("oktest", _table(_csv, ("OKTest.csv", "OKTest_heldout.csv"), "prompt"), "comply",
                     "unclear (research use)"),
    "phtest": Source("phtest_subset200", _table(_json, "PHTest-200.json", "prompt"), "comply", "MIT"),
    "stl_safe": Source("safety_tuned_llamas_eval", _stl(("I-PhysicalSafetySafe",)), "comply", "MIT (SafeText)"),
    "cyberseceval_frr": Source("cyberseceval_mitre_frr", _table(_json, "mitre_frr.json", "mutated_prompt"),
                               "comply", "MIT"),
    # evaluation only: never trained or calibrated on
    "xstest_safe": Source("xstest", _xstest("safe"), "comply", "CC BY 4.0"),
    "xstest_unsafe": Source("xstest", _xstest("unsafe"), "refuse", "CC BY 4.0"),
}

EVAL_ONLY = frozenset({"xstest_safe", "xstest_unsafe"})
"""Sources that may only ever be evaluated on (XSTest): the builder refuses to train or calibrate on them."""

TEMPLATES = ("GPTFuzzer.csv", "seed_short_25.csv")
PLACEHOLDER = "[INSERT PROMPT HERE]"


def read_source(name: str, root: Path) -> list[tuple[str, str]]:
    """All ``(text, category)`` pairs of one source, whitespace-trimmed, empty texts dropped."""
    if name not in SOURCES:
        raise DataError(f"unknown guard data source '{name}' (known: {', '.join(SOURCES)})")
    folder = root / SOURCES[name].folder
    if not folder.is_dir():
        raise DataError(f"guard data source '{name}': folder {folder} is missing")
    return [(t.strip(), c or name) for t, c in SOURCES[name].read(folder) if t and t.strip()]


def read_templates(root: Path) -> list[str]:
    """The GPTFuzz jailbreak templates, each holding at least one ``[INSERT PROMPT HERE]``."""
    folder = root / "jailbreak_templates_gptfuzz"
    out = []
    for name in TEMPLATES:
        for number, r in enumerate(_csv(folder / name), start=2):
            if PLACEHOLDER not in r["text"]:
                raise DataError(f"{folder / name} line {number}: template has no {PLACEHOLDER}")
            out.append(r["text"])
    return list(dict.fromkeys(out))
