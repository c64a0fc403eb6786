"""The ``practice`` stage: Orca-Math's iterative learning from the model's own answers (arXiv 2402.14830, §4).

For R rounds: sample k answers per training problem from the current model (k = 4, T = 0.7, top-p 0.95,
batched); grade each by answer extraction + exact match against the reference answer, or by an LLM judge
through a backend; build preference data — DPO/IPO pairs of every (correct, wrong) answer of a problem,
or KTO rows labelled by correctness — with the reference solution as the positive when no sample is
correct, skipping (and counting) problems with no wrong answer; then train from the current model with it
as the reference (the previous round's model, Orca-Math's iterative DPO/KTO), for ``steps`` steps but at
most ``max_epochs`` passes over the round's rows. Held-out problems are
evaluated greedily before the first round and after each; practice stops when held-out accuracy falls,
and the stage's model is the best round's.

Resume: each round lives in ``round_<r>/`` and every phase leaves its artefact (``samples.jsonl``,
``grades.jsonl``, ``pairs.jsonl``, the loop's ``checkpoint/``, ``model/``, ``eval.jsonl``, then
``round.json``), so a killed run restarts at the phase — and, in training, the step — where it stopped.
``state.json`` records the progress and the config identity; folders from another config are discarded.
Writes also ``model/`` (the best round), ``report_section.md`` and ``accuracy.png``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result, atomic_write_json, read_json, read_jsonl, write_jsonl
from slmkit.config import field, to_dict
from slmkit.errors import ConfigError
from slmkit.train.preference import PreferenceArgs

JUDGE_TEMPLATE = (
    "You are grading a student's answer to a math word problem against the teacher's solution.\n"
    "Problem: {question}\nTeacher's solution: {reference}\nTeacher's final answer: {answer}\n"
    "Student's answer: {response}\n"
    "Is the student's final answer the same as the teacher's? Reply with one word: CORRECT or INCORRECT."
)
_VERDICT = re.compile(r"\b(incorrect|correct)\b", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class Config(PreferenceArgs):
    train_file: str | None = field(None, doc="jsonl of practice problems: prompt, completion (the reference "
                                   "solution), answer", input=True)
    val_file: str | None = field(None, doc="jsonl of held-out problems (prompt, answer) evaluated every round",
                                 input=True)
    model: str | None = field(None, doc="model folder or hub id that practises (e.g. the SFT model)", input=True)
    tokenizer: str | None = field(None, doc="tokenizer folder or hub id (default: the model's own)", input=True)
    rounds: int = field(2, doc="practice rounds (sample, grade, build pairs, train, evaluate)")
    steps: int = field(100, doc="optimizer steps per round, at most max_epochs passes over its rows")
    max_epochs: float = field(2.0, doc="cap on a round's passes over its preference rows (0: none); a round "
                              "with few rows (most problems solved) then takes few steps instead of overfitting")
    problems_per_round: int = field(0, doc="training problems sampled each round, a fresh seeded draw (0: all)")
    k: int = field(4, doc="answers sampled per problem")
    temperature: float = field(0.7, doc="sampling temperature")
    top_p: float = field(0.95, doc="nucleus sampling mass")
    max_new_tokens: int = field(256, doc="tokens per sampled or evaluated answer")
    gen_batch_size: int = field(32, doc="problems per generation batch (each with k samples)")
    grader: Literal["exact", "judge"] = field("exact", doc="exact (extract + exact match) or judge (an LLM)")
    extractor: str = field("hash", doc="answer extractor for exact grading (see slmkit.eval.extractors)")
    judge: dict[str, Any] = field(factory=dict, doc="backend spec of the judge, e.g. {kind: openai, model: ...}")
    judge_template: str = field(JUDGE_TEMPLATE, doc="judge prompt with {question} {reference} {answer} {response}")
    max_pairs_per_problem: int = field(0, doc="cap on DPO pairs per problem, a seeded draw (0: all)")
    eval_limit: int = field(0, doc="evaluate at most this many held-out problems (0: all)")
    early_stop: bool = field(True, doc="stop when held-out accuracy falls below the previous round's")


OUTPUTS = {"model": "model", "tokenizer": "model"}


# --- grading ----------------------------------------------------------------------------------------------

def make_grader(cfg: Config) -> Any:
    """``grade(problems, answers_per_problem) -> [[{text, extracted, correct}]]``; correct is None if unknown."""
    from slmkit.eval.extractors import EXTRACTORS, is_correct

    if cfg.grader == "exact":
        if cfg.extractor not in EXTRACTORS:
            raise ConfigError(f"practice: unknown extractor '{cfg.extractor}' (known: {', '.join(EXTRACTORS)})")
        extract = EXTRACTORS[cfg.extractor]

        def grade_exact(problems: list[dict], answers: list[list[str]]) -> list[list[dict]]:
            return [[{"text": t, "extracted": extract(t), "correct": is_correct(extract(t), p["answer"])}
                     for t in texts] for p, texts in zip(problems, answers)]

        return grade_exact
    return judge_grader(cfg)


def judge_grader(cfg: Config) -> Any:
    """Grading by an LLM judge through any backend (``slmkit.backends``), greedy, one verdict per answer."""
    from slmkit.backends import make_backend
    from slmkit.models.generate import GenerateConfig

    if not cfg.judge:
        raise ConfigError("practice: grader 'judge' needs judge: {kind: ..., ...} (a backend spec)")
    try:
        cfg.judge_template.format(question="", reference="", answer="", response="")
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(f"practice: judge_template is not a valid template ({err!r}); "
                          "use {question} {reference} {answer} {response}") from None
    backend = make_backend(cfg.judge)
    gen = GenerateConfig(max_new_tokens=16, temperature=0.0, batch_size=cfg.gen_batch_size)

    def grade_judge(problems: list[dict], answers: list[list[str]]) -> list[list[dict]]:
        prompts = [cfg.judge_template.format(question=p["prompt"], reference=p.get("completion", ""),
                                             answer=p["answer"], response=t)
                   for p, texts in zip(problems, answers) for t in texts]
        verdicts = iter(g.texts[0] for g in backend.generate(prompts, gen))
        graded = []
        for texts in answers:
            row = []
            for t in texts:
                verdict = next(verdicts)
                found = _VERDICT.search(verdict)
                row.append({"text": t, "verdict": verdict,
                            "correct": None if found is None else found.group(1).lower() == "correct"})
            graded.append(row)
        return graded

    return grade_judge


# --- pairs ------------------------------------------------------------------------------------------------

def build_preferences(problems: list[dict], graded: list[list[dict]], method: str, max_pairs: int = 0,
                      seed: int = 0) -> tuple[list[dict], dict[str, int]]:
    """Preference rows and counts from graded samples (Orca-Math §4: positives = correct samples, or the
    reference solution when none is; negatives = wrong samples; no negative = problem skipped)."""
    rng = random.Random(seed)
    rows: list[dict] = []
    counts = {"problems": len(problems), "skipped_no_negative": 0, "skipped_no_positive": 0,
              "fallback_positive": 0, "ungraded_answers": 0}
    for problem, answers in zip(problems, graded):
        counts["ungraded_answers"] += sum(a["correct"] is None for a in answers)
        positives = list(dict.fromkeys(a["text"] for a in answers if a["correct"]))
        negatives = list(dict.fromkeys(a["text"] for a in answers if a["correct"] is False))
        if not negatives:
            counts["skipped_no_negative"] += 1
            continue
        if not positives:
            if not problem.get("completion"):
                counts["skipped_no_positive"] += 1
                continue
            positives = [problem["completion"]]
            counts["fallback_positive"] += 1
        meta = {"answer": problem["answer"]}
        if method == "kto":
            rows += [{"prompt": problem["prompt"], "completion": t, "label": True, "meta": meta} for t in positives]
            rows += [{"prompt": problem["prompt"], "completion": t, "label": False, "meta": meta} for t in negatives]
            continue
        pairs = [(c, r) for c in positives for r in negatives if c != r]
        if max_pairs and len(pairs) > max_pairs:
            pairs = rng.sample(pairs, max_pairs)
        rows += [{"prompt": problem["prompt"], "chosen": c, "rejected": r, "meta": meta} for c, r in pairs]
    counts["rows"] = len(rows)
    return rows, counts


# --- one round --------------------------------------------------------------------------------------------

def sample_answers(model: Any, tokenizer: Any, problems: list[dict], cfg: Config, seed: int) -> tuple[list, dict]:
    """k sampled answers per problem, and the throughput of sampling them."""
    from slmkit.models.generate import GenerateConfig, generate

    gen = GenerateConfig(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                         n=cfg.k, seed=seed, batch_size=cfg.gen_batch_size, prompt_format=cfg.prompt_format)
    start = time.perf_counter()
    outs = generate(model, tokenizer, [p["prompt"] for p in problems], gen)
    seconds = max(time.perf_counter() - start, 1e-9)
    answers = sum(len(o.texts) for o in outs)
    tokens = sum(sum(o.n_tokens) for o in outs)
    stats = {"answers": answers, "sampling_s": round(seconds, 3), "answers_per_s": answers / seconds,
             "sampled_tokens_per_s": tokens / seconds}
    return [{"prompt": p["prompt"], "answer": p["answer"], "samples": o.texts, "n_tokens": o.n_tokens}
            for p, o in zip(problems, outs)], stats


def evaluate(model: Any, tokenizer: Any, rows: list[dict], cfg: Config, grade: Any) -> tuple[list[dict], dict]:
    """Greedy answers to held-out problems, graded like the practice samples."""
    from slmkit.models.generate import GenerateConfig, generate

    gen = GenerateConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.gen_batch_size,
                         prompt_format=cfg.prompt_format)
    outs = generate(model, tokenizer, [r["prompt"] for r in rows], gen)
    graded = grade(rows, [o.texts for o in outs])
    preds = [{"prompt": r["prompt"], "gold": r["answer"], **g[0]} for r, g in zip(rows, graded)]
    n = max(1, len(preds))
    return preds, {"accuracy": sum(bool(p["correct"]) for p in preds) / n, "n": len(preds)}


def practise_round(r: int, start: str, problems: list[dict], ctx: dict[str, Any]) -> dict[str, Any]:
    """Run (or finish) round ``r`` from the model folder ``start``; returns the round's metrics."""
    from slmkit.artifacts import hash_input
    from slmkit.models.load import load_model, save_model
    from slmkit.train.preference import align

    cfg, tokenizer, folder = ctx["cfg"], ctx["tokenizer"], ctx["run_dir"] / f"round_{r}"
    model = load_model(start)
    if not (folder / "samples.jsonl").exists():
        samples, stats = sample_answers(model, tokenizer, problems, cfg, seed=cfg.seed * 1000 + r)
        atomic_write_json(folder / "sampling.json", stats)
        write_jsonl(folder / "samples.jsonl", samples)
    samples, stats = read_jsonl(folder / "samples.jsonl"), read_json(folder / "sampling.json")
    if not (folder / "grades.jsonl").exists():
        graded = ctx["grade"](problems, [s["samples"] for s in samples])
        write_jsonl(folder / "grades.jsonl", [{"prompt": p["prompt"], "answer": p["answer"], "grades": g}
                                              for p, g in zip(problems, graded)])
    graded = [g["grades"] for g in read_jsonl(folder / "grades.jsonl")]
    if not (folder / "pairs.jsonl").exists():
        rows, counts = build_preferences(problems, graded, cfg.method, cfg.max_pairs_per_problem, cfg.seed + r)
        atomic_write_json(folder / "pairs_counts.json", counts)
        write_jsonl(folder / "pairs.jsonl", rows)
    rows, counts = read_jsonl(folder / "pairs.jsonl"), read_json(folder / "pairs_counts.json")
    summary: dict[str, Any] = {}
    if not rows:
        save_model(model, tokenizer, folder / "model")  # nothing to learn from: the model carries over
    elif not (folder / "model" / "config.json").exists():
        model, summary = align(model, tokenizer, rows, None, round_config(cfg, len(rows)), folder,
                               ref_id=hash_input(start),
                               fingerprint=f"{ctx['fingerprint']}:round{r}", on_step=ctx["on_step"])
        save_model(model, tokenizer, folder / "model")
        shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # the saved model supersedes it
    sample_acc = sum(bool(a["correct"]) for g in graded for a in g) / max(1, sum(len(g) for g in graded))
    return {"round": r, "sample_accuracy": sample_acc, **stats, **counts,
            **{f"train_{k}": v for k, v in summary.items()}}


def round_config(cfg: Config, n_rows: int) -> Config:
    """The round's training arguments: ``steps``, capped at ``max_epochs`` passes over ``n_rows`` rows.

    Why: on a model that solves nearly every problem a round keeps a handful of pairs, and a fixed step
    count then means hundreds of passes over them — measured: one pair, 200 steps, held-out 100 % → 13.5 %.
    """
    if not cfg.max_epochs:
        return cfg
    cap = max(1, math.ceil(cfg.max_epochs * n_rows / cfg.batch_size))  # batch_size counts pairs or KTO rows
    return dataclasses.replace(cfg, steps=min(cfg.steps, cap))


def held_out(r: int, model_dir: str, ctx: dict[str, Any]) -> float:
    """Evaluate ``model_dir`` on the held-out rows into ``round_<r>/eval.jsonl``; returns the accuracy."""
    from slmkit.models.load import load_model

    folder = ctx["run_dir"] / f"round_{r}"
    preds, metrics = evaluate(load_model(model_dir), ctx["tokenizer"], ctx["val"], ctx["cfg"], ctx["grade"])
    write_jsonl(folder / "eval.jsonl", preds)
    return metrics["accuracy"]


# --- the loop over rounds ---------------------------------------------------------------------------------

def identity(cfg: Config, run_dir: Path) -> str:
    """Config and input contents that a run folder's rounds belong to: the recipe runner's fingerprint, which
    leaves out where the inputs live (so a moved folder resumes), else the config as given."""
    from slmkit.artifacts import stage_fingerprint

    blob = stage_fingerprint(run_dir) or json.dumps({"config": to_dict(cfg)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_state(run_dir: Path, ident: str) -> dict[str, Any]:
    """``state.json`` of this config; rounds left by another config are removed first."""
    path = run_dir / "state.json"
    if path.exists() and read_json(path).get("identity") == ident:
        return read_json(path)
    for stale in [*run_dir.glob("round_*"), run_dir / "model"]:
        shutil.rmtree(stale, ignore_errors=True)
    state = {"identity": ident, "rounds": [], "current_round": 0, "stopped_early": False}
    atomic_write_json(path, state)
    return state


def read_problems(cfg: Config) -> tuple[list[dict], list[dict]]:
    """Training problems and held-out problems; each needs an answer to be graded against."""
    from slmkit.data.loaders import read_rows
    from slmkit.errors import DataError

    if not cfg.train_file or not cfg.val_file or not cfg.model:
        raise ConfigError("practice: train_file, val_file and model must be set (wire them with from:)")
    if cfg.rounds < 1 or cfg.k < 2 or cfg.max_epochs < 0:
        raise ConfigError(f"practice: rounds must be >= 1, k >= 2 and max_epochs >= 0 (got rounds={cfg.rounds}, "
                          f"k={cfg.k}, max_epochs={cfg.max_epochs})")
    loaded = []
    for path in (cfg.train_file, cfg.val_file):
        rows = read_rows(path)
        missing = next((i for i, r in enumerate(rows) if not r["answer"].strip()), None)
        if missing is not None:
            raise DataError(f"{path} row {missing + 1}: field 'answer' is empty (practice grades against it)")
        if not rows:
            raise DataError(f"{path}: no rows")
        loaded.append(rows)
    val = loaded[1][:cfg.eval_limit] if cfg.eval_limit else loaded[1]
    return loaded[0], val


def round_problems(rows: list[dict], cfg: Config, r: int) -> list[dict]:
    """The problems practised in round ``r``: all, or a seeded draw of ``problems_per_round``."""
    if not cfg.problems_per_round or cfg.problems_per_round >= len(rows):
        return rows
    return random.Random(cfg.seed * 7919 + r).sample(rows, cfg.problems_per_round)


def practise(cfg: Config, run_dir: Path, on_step: Any = None) -> Result:
    """All rounds, resuming where a previous run of the same config stopped."""
    from slmkit.models.load import load_model, load_tokenizer, save_model
    from slmkit.train.preference import check_args

    check_args(cfg)
    train_rows, val_rows = read_problems(cfg)
    ident = identity(cfg, run_dir)
    state = load_state(run_dir, ident)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    ctx = {"cfg": cfg, "tokenizer": tokenizer, "run_dir": run_dir, "val": val_rows, "grade": make_grader(cfg),
           "fingerprint": ident, "on_step": on_step}
    if not (run_dir / "round_0" / "round.json").exists():
        atomic_write_json(run_dir / "round_0" / "round.json",
                          {"round": 0, "heldout_accuracy": held_out(0, cfg.model, ctx)})
    history, sources = [read_json(run_dir / "round_0" / "round.json")], [cfg.model]
    for r in range(1, cfg.rounds + 1):
        done = run_dir / f"round_{r}" / "round.json"
        if not done.exists():
            atomic_write_json(run_dir / "state.json", {**state, "current_round": r})
            metrics = practise_round(r, sources[-1], round_problems(train_rows, cfg, r), ctx)
            metrics["heldout_accuracy"] = held_out(r, str(run_dir / f"round_{r}" / "model"), ctx)
            atomic_write_json(done, metrics)
        history.append(read_json(done))
        sources.append(str(run_dir / f"round_{r}" / "model"))
        state = {**state, "rounds": history[1:], "current_round": r}
        if cfg.early_stop and history[-1]["heldout_accuracy"] < history[-2]["heldout_accuracy"]:
            state["stopped_early"] = True
            break
    best = max(history, key=lambda m: (m["heldout_accuracy"], m["round"]))
    save_model(load_model(sources[best["round"]]), tokenizer, run_dir / OUTPUTS["model"])
    atomic_write_json(run_dir / "state.json", {**state, "best_round": best["round"], "finished": True})
    write_report(history, best["round"], run_dir)
    return Result(metrics=summarise(history, best["round"], state["stopped_early"]))


def summarise(history: list[dict], best: int, stopped: bool) -> dict[str, Any]:
    """Headline metrics: accuracy before/after, gain, rounds, pairs and sampling throughput."""
    practised = history[1:]
    answers = sum(m["answers"] for m in practised)
    seconds = sum(m["sampling_s"] for m in practised)
    out: dict[str, Any] = {"heldout_accuracy_start": history[0]["heldout_accuracy"],
                           "heldout_accuracy": history[best]["heldout_accuracy"],
                           "gain": history[best]["heldout_accuracy"] - history[0]["heldout_accuracy"],
                           "best_round": best, "rounds_run": len(practised), "stopped_early": stopped,
                           "answers_per_s": answers / max(seconds, 1e-9)}
    for m in practised:
        out[f"round_{m['round']}_heldout_accuracy"] = m["heldout_accuracy"]
        out[f"round_{m['round']}_rows"] = m["rows"]
    return out


def write_report(history: list[dict], best: int, run_dir: Path) -> None:
    """``report_section.md`` (a table per round) and ``accuracy.png`` for the run report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slmkit.artifacts import atomic_write_bytes, atomic_write_text

    lines = ["### Practice rounds (Orca-Math)", "",
             "| round | held-out acc. | sample acc. | preference rows | skipped (no wrong answer) | "
             "reference as positive | answers/s |", "|---|---|---|---|---|---|---|"]
    for m in history:
        star = " (best)" if m["round"] == best else ""
        lines.append(f"| {m['round']}{star} | {m['heldout_accuracy']:.3f} | {m.get('sample_accuracy', float('nan')):.3f}"
                     f" | {m.get('rows', '')} | {m.get('skipped_no_negative', '')} | {m.get('fallback_positive', '')}"
                     f" | {m.get('answers_per_s', float('nan')):.1f} |")
    atomic_write_text(run_dir / "report_section.md", "\n".join(lines) + "\n\n![accuracy](accuracy.png)\n")
    fig, ax = plt.subplots(figsize=(4.5, 3))
    ax.plot([m["round"] for m in history], [m["heldout_accuracy"] for m in history], marker="o")
    ax.set_xlabel("practice round (0 = start)")
    ax.set_ylabel("held-out accuracy")
    ax.set_xticks([m["round"] for m in history])
    fig.tight_layout()
    image = io.BytesIO()
    fig.savefig(image, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(run_dir / "accuracy.png", image.getvalue())


def run(cfg: Config, run_dir: Path) -> Result:
    """Practise ``cfg.rounds`` rounds and save the best model to ``run_dir/model``."""
    return practise(cfg, run_dir)
