"""Evaluation tasks: one flat YAML file per task (``slmkit/eval/tasks/*.yaml``) loaded into a frozen spec.

A task file names its source (a file in the shared data folder, a hub id as the alternative, or a
built-in generator), where few-shot examples come from, a prompt template per strategy, the extractor
pipeline of each rule-based method, the answer type, stop strings, token budgets and a version. No
includes: everything a task does is in its one file. ``EVAL_TASKS`` maps names to the shipped files; a
path to any other YAML file works as a task name too. ``load_items`` returns the test items and the
few-shot pool, which never overlap.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.config import Where, field, from_dict, load_yaml
from slmkit.errors import ConfigError, DataError

TASK_DIR = Path(__file__).resolve().parent / "tasks"
HOLDOUT_SEED = 1234  # fixed: the few-shot pool carved out of a set without a train split never moves

EVAL_TASKS: dict[str, str] = {
    "gsm8k": "gsm8k.yaml", "gsm_hard": "gsm_hard.yaml", "svamp": "svamp.yaml", "asdiv": "asdiv.yaml",
    "multiarith": "multiarith.yaml", "addsub": "addsub.yaml", "math500": "math500.yaml",
    "arc_challenge": "arc_challenge.yaml", "commonsenseqa": "commonsenseqa.yaml",
    "strategyqa": "strategyqa.yaml", "math_builtin": "math_builtin.yaml",
    **{f"sorting_{n}_{s}": f"sorting_{n}_{s}.yaml" for n in (8, 16, 32) for s in ("positive", "mixed")},
}


@dataclass(frozen=True, kw_only=True)
class Source:
    kind: str = field(doc="record format (see slmkit.eval.sources.CONVERTERS) or 'builtin'")
    path: str = field("", doc="file inside the shared data folder")
    hub: str = field("", doc="hub data set id, used when the file is absent")
    hub_config: str | None = field(None, doc="hub data set configuration")
    split: str = field("test", doc="hub split")
    task: str = field("", doc="built-in generator (slmkit.data.tasks) for kind 'builtin'")
    params: dict[str, Any] = field(factory=dict, doc="options of the built-in generator")
    n: int = field(300, doc="items a built-in generator makes")
    seed: int = field(0, doc="seed of a built-in generator")


@dataclass(frozen=True, kw_only=True)
class Templates:
    direct: str = field(doc="query for direct answers ({question}, {choices})")
    cot: str = field(doc="query asking for step-by-step reasoning")
    shot: str = field(doc="one exemplar for k-shot ({question}, {choices}, {answer})")
    shot_cot: str = field(doc="one exemplar for k-shot CoT ({solution} holds the rationale)")


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    name: str = field(doc="task name")
    version: int = field(doc="bumped whenever prompts, extractors or data handling change")
    description: str = field("", doc="one line")
    licence: str = field("", doc="data licence, shown in reports")
    source: Source = field(doc="test items")
    fewshot_source: Source | None = field(None, doc="few-shot pool (a train split)")
    fewshot_holdout: int = field(0, doc="without a train split: carve this many items out as the pool")
    answer_type: Literal["number", "choice", "yesno", "math", "list", "text"] = field(doc="comparison")
    templates: Templates = field(doc="prompt template per strategy")
    stop: list[str] = field(factory=list, doc="stop strings for generation")
    strict: list[str] = field(doc="extractor pipeline of the strict method")
    flexible: list[str] = field(doc="extractor pipeline of the flexible method")
    max_new_tokens_direct: int = field(32, doc="token budget of direct and k-shot answers")
    max_new_tokens_cot: int = field(256, doc="token budget of CoT answers")
    notes: str = field("", doc="caveats shown in reports (e.g. where the few-shot pool comes from)")


def task_path(name: str) -> Path:
    """The YAML of a shipped task, or ``name`` itself when it is a path to a task file."""
    if name in EVAL_TASKS:
        return TASK_DIR / EVAL_TASKS[name]
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    from slmkit.registry import resolve

    resolve(EVAL_TASKS, name, "eval task", ConfigError)  # raises with a did-you-mean
    raise AssertionError  # unreachable


def load_spec(name: str) -> TaskSpec:
    """Load and validate a task file (unknown keys and bad extractor names name the file and line)."""
    from slmkit.eval.extractors import EXTRACTORS
    from slmkit.eval.sources import CONVERTERS

    path = task_path(name)
    data, lines = load_yaml(path)
    where = Where(str(path), lines)
    spec = from_dict(TaskSpec, data, where)
    for method in ("strict", "flexible"):
        for i, extractor in enumerate(getattr(spec, method)):
            if extractor not in EXTRACTORS:
                raise where.at(method).at(i).fail(f"unknown extractor '{extractor}' (known: {', '.join(EXTRACTORS)})")
    for key, src in (("source", spec.source), ("fewshot_source", spec.fewshot_source)):
        if src is not None and src.kind != "builtin" and src.kind not in CONVERTERS:
            raise where.at(key).at("kind").fail(f"unknown source kind '{src.kind}'")
    return spec


def read_source(src: Source, prefer: str = "auto") -> list[dict[str, Any]]:
    """Items of one source: the local file (default), else the hub id; ``prefer`` = auto | local | hub."""
    from slmkit.data.shared import shared_path
    from slmkit.eval import sources

    if src.kind == "builtin":
        return sources.builtin(src.task, src.n, src.seed, src.params)
    path = shared_path(*Path(src.path).parts) if src.path else None
    if prefer != "hub" and path is not None and (path.exists() or prefer == "local" or not src.hub):
        return sources.read_local(src.kind, path)
    if not src.hub:
        raise DataError(f"source '{src.kind}' has no local file and no hub id")
    return sources.read_hub(src.kind, src.hub, src.hub_config, src.split)


def load_items(spec: TaskSpec, prefer: str = "auto") -> tuple[list[dict], list[dict]]:
    """(test items, few-shot pool); the pool is a train split, or a fixed held-out part of the test set."""
    items = read_source(spec.source, prefer)
    if spec.fewshot_source is not None:
        pool = read_source(spec.fewshot_source, prefer)
        seen = {it["question"] for it in items}
        pool = [p for p in pool if p["question"] not in seen]  # a generator may repeat a test question
    elif spec.fewshot_holdout:
        order = list(range(len(items)))
        random.Random(HOLDOUT_SEED).shuffle(order)
        held = set(order[:spec.fewshot_holdout])
        pool = [items[i] for i in sorted(held)]
        in_pool = {p["question"] for p in pool}
        # Some sets repeat a question (MultiArith): a copy of an exemplar must not stay in the test items.
        items = [it for i, it in enumerate(items) if i not in held and it["question"] not in in_pool]
    else:
        pool = []
    if not items:
        raise DataError(f"task '{spec.name}' has no items")
    return items, pool
