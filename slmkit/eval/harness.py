"""The evaluation loop: models × tasks (and perturbed variants) × strategies × seeds, scored by every method.

For each cell (model, task, strategy, seed) the harness builds prompts, generates the missing outputs in
chunks (each chunk committed to the store, so a killed run resumes where it stopped), then scores the
*same* generations with every method — strict and flexible extractor pipelines, the LLM judge(s) and the
rules-then-judge cascade — and checks intermediate arithmetic steps. With greedy decoding, prompts that
do not depend on the seed (direct, CoT) are generated once and reused by the other seeds: the outputs
would be identical. Reads task data and models; writes only to the results store and the judge cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from slmkit.eval.extractors import trace
from slmkit.eval.metrics import answers_match
from slmkit.eval.prompts import STRATEGIES, build_prompts, token_budget
from slmkit.eval.steps import check_steps
from slmkit.eval.store import Store

CHUNK = 128  # prompts generated between commits: at most this much work is redone after a kill


@dataclass
class Subject:
    """A model under evaluation: a name and a function from (prompts, GenerateConfig) to Generations."""

    name: str
    generate: Callable[[list[str], Any], list[Any]]
    model: Any = None  # the in-process model, when there is one (footprint)
    path: str | None = None
    variant: str = "original"
    params: int | None = None  # of the uncompressed model (packed weights are not Parameters)


@dataclass(frozen=True)
class Settings:
    """What every cell shares (taken from the stage config)."""

    strategies: list[str]
    methods: list[str]
    seeds: list[int]
    k_shot: int
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int
    prompt_format: str
    cascade_rules: str
    step_check: bool


def generate_cell(store: Store, subject: Subject, task: str, strategy: str, seed: int,
                  prompts: list[str], items: list[dict], gen: Any, reuse: bool) -> list[dict]:
    """Outputs for every item, generating only what the store lacks; returns rows in item order."""
    import json
    from dataclasses import asdict

    key = json.dumps({k: v for k, v in asdict(gen).items() if k not in ("seed", "batch_size")}, sort_keys=True)
    stored = store.done_items(subject.name, task, strategy, seed)
    done = {it["id"]: stored[it["id"]] for it, p in zip(items, prompts)
            if it["id"] in stored and stored[it["id"]]["prompt"] == p and stored[it["id"]]["gen"] == key}
    if reuse and len(done) < len(items):
        copied = _reusable(store, subject.name, task, strategy, seed, prompts, items, done, key)
        store.add_generations(subject.name, task, strategy, seed, copied)
        done.update({r["item_id"]: r for r in copied})
    todo = [i for i, item in enumerate(items) if item["id"] not in done]
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start:start + CHUNK]
        began = time.perf_counter()
        outs = subject.generate([prompts[i] for i in chunk], gen)
        per = (time.perf_counter() - began) / len(chunk)
        rows = [{"item_id": items[i]["id"], "prompt": prompts[i], "output": o.texts[0],
                 "n_tokens": o.n_tokens[0], "seconds": per, "gen": key} for i, o in zip(chunk, outs)]
        store.add_generations(subject.name, task, strategy, seed, rows)
        done.update({r["item_id"]: r for r in rows})
    return [{"item_id": it["id"], **done[it["id"]]} for it in items]


def _reusable(store: Store, model: str, task: str, strategy: str, seed: int, prompts: list[str],
              items: list[dict], done: dict, key: str) -> list[dict]:
    """Greedy outputs of other seeds for identical prompts and settings (same model, task and strategy)."""
    rows = store.query("SELECT item_id, prompt, output, n_tokens, seconds, gen FROM generations WHERE model=? "
                       "AND task=? AND strategy=? AND seed!=? AND gen=?", (model, task, strategy, seed, key))
    by_key = {(r["item_id"], r["prompt"]): r for r in rows}
    return [by_key[(it["id"], p)] for it, p in zip(items, prompts)
            if it["id"] not in done and (it["id"], p) in by_key]


def _rule_preds(names: list[str], rows: list[dict], items: list[dict], spec: Any) -> list[dict]:
    preds = []
    for row, item in zip(rows, items):
        value, steps = trace(names, row["output"])
        preds.append({"item_id": item["id"], "extracted": value,
                      "correct": answers_match(value, item["answer"], spec.answer_type),
                      "trace": {"raw": row["output"], "steps": steps, "gold": item["answer"]}})
    return preds


def _ask_judge(judge: Any, ask: list[int], preds: list[dict], rows: list[dict], items: list[dict]) -> int:
    """Replace the verdicts of ``preds[ask]`` by the judge's; returns the number of uncached calls."""
    graded = judge.grade([items[i]["question"] for i in ask], [items[i]["answer"] for i in ask],
                         [rows[i]["output"] for i in ask])
    for i, g in zip(ask, graded):
        verdict = g["verdict"]
        preds[i]["extracted"] = None if verdict is None else ("correct" if verdict else "incorrect")
        preds[i]["correct"] = bool(verdict)
        preds[i]["trace"]["steps"].append({"judge": judge.name, "value": g["output"], "verdict": verdict,
                                           "cached": g["cached"]})
    return sum(not g["cached"] for g in graded)


def score(method: str, rows: list[dict], items: list[dict], spec: Any, judges: dict[str, Any],
          cascade_rules: str = "strict") -> tuple[list[dict], dict[str, Any]]:
    """Predictions (with the raw → extracted trace) and the summary of one method over one cell.

    Methods: ``strict``, ``flexible``, ``judge[:name]`` (every output graded) and ``cascade[:name]``
    (the ``cascade_rules`` pipeline first; the judge only where it cannot parse an answer).
    """
    kind, _, judge_name = method.partition(":")
    calls = 0
    if kind in ("strict", "flexible"):
        preds = _rule_preds(getattr(spec, kind), rows, items, spec)
    elif kind == "cascade":
        preds = _rule_preds(getattr(spec, cascade_rules), rows, items, spec)
        failed = [i for i, p in enumerate(preds) if p["extracted"] is None]
        calls = _ask_judge(judges[judge_name], failed, preds, rows, items) if failed else 0
    elif kind == "judge":
        preds = [{"item_id": it["id"], "extracted": None, "correct": False,
                  "trace": {"raw": r["output"], "steps": [], "gold": it["answer"]}} for r, it in zip(rows, items)]
        calls = _ask_judge(judges[judge_name], list(range(len(rows))), preds, rows, items)
    else:
        raise ValueError(f"unknown method '{method}'")
    n = len(preds)
    failures = sum(p["extracted"] is None for p in preds)
    correct = sum(bool(p["correct"]) for p in preds)
    return preds, {"n": n, "n_correct": correct, "accuracy": correct / n if n else 0.0,
                   "parse_failures": failures, "parse_failure_rate": failures / n if n else 0.0,
                   "judge_calls": calls}


def step_rows(rows: list[dict], preds: list[dict]) -> list[dict]:
    """Per-generation step check, with whether the final answer was right (flexible method)."""
    out = []
    for row, pred in zip(rows, preds):
        checked = check_steps(row["output"])
        out.append({"item_id": row["item_id"], "n_steps": checked["n_steps"], "n_correct": checked["n_correct"],
                    "first_wrong": checked["first_wrong"], "answer_correct": pred["correct"]})
    return out


def run_cell(store: Store, subject: Subject, task: str, spec: Any, items: list[dict], pool: list[dict],
             strategy: str, seed: int, settings: Settings, judges: dict[str, Any]) -> None:
    """Generate (or resume) one cell and score it with every method."""
    from slmkit.models.generate import GenerateConfig

    prompts = build_prompts(spec, items, pool, strategy, settings.k_shot, seed)
    gen = GenerateConfig(max_new_tokens=token_budget(spec, strategy, settings.max_new_tokens),
                         temperature=settings.temperature, top_p=settings.top_p, seed=seed, stop=list(spec.stop),
                         batch_size=settings.batch_size, prompt_format=settings.prompt_format)
    reuse = settings.temperature == 0 and STRATEGIES[strategy][1] is None
    rows = generate_cell(store, subject, task, strategy, seed, prompts, items, gen, reuse)
    flexible = None
    for method in settings.methods:
        preds, summary = score(method, rows, items, spec, judges, settings.cascade_rules)
        store.put_predictions(subject.name, task, strategy, method, seed, preds, summary, spec.version)
        flexible = preds if method == "flexible" else flexible
    if settings.step_check:
        if flexible is None:
            flexible, _ = score("flexible", rows, items, spec, judges, settings.cascade_rules)
        store.put_steps(subject.name, task, strategy, seed, step_rows(rows, flexible))
