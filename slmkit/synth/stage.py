"""The ``synth`` stage: synthetic training rows made by teacher roles (Orca-Math or MediFlow-style pipelines).

Builds the teacher backends (``backend``, with per-role overrides), runs the pipeline's items through the
engine (concurrency, batching, cache, resumable journal; ``synth/engine.py``), then filters all candidate
rows (length, exact and near duplicates, n-gram contamination against the evaluation sets and the
``test_file``; ``synth/filters.py``). A killed run started again resumes from its journal and ends with
exactly the rows of an uninterrupted run.

Reads: seed rows (``seed_file`` or a built-in ``seed_task``; orca_math), the evaluation sets.
Writes: ``train.jsonl`` (canonical rows with provenance in ``meta.synth``), ``rejected.jsonl`` (every
rejected candidate with its reason), ``stats.json``, ``report_section.md``, ``journal.jsonl`` and
``cache/`` (unless ``cache_dir`` points elsewhere). The cache is keyed by the backend's name (kind and
model), so clear it, or point ``cache_dir`` elsewhere, when the model behind a name changes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result
from slmkit.config import field

PIPELINES = {"orca_math": "slmkit.synth.orca_math", "mediflow": "slmkit.synth.mediflow"}
# Settings that only change the filters or the speed: a journal made with other values still holds.
_NOT_IN_JOURNAL_KEY = ("max_chars", "dedup", "near_dup_threshold", "shingle", "decontaminate", "test_file",
                       "ngram", "overlap", "concurrency", "batch_size", "cache_dir")


@dataclass(frozen=True, kw_only=True)
class Config:
    pipeline: Literal["orca_math", "mediflow"] = field("orca_math", doc="orca_math (Suggester/Editor rounds) or mediflow (JSON instructions)")
    backend: dict[str, Any] = field(factory=lambda: {"kind": "rule_math"}, doc="teacher backend spec: {kind: rule_math|local|openai, ...}")
    role_backends: dict[str, dict[str, Any]] = field(factory=dict, doc="per-role backend specs, e.g. {solver: {kind: openai, model: ...}}")
    templates: dict[str, str] = field(factory=dict, doc="per-role prompt templates (text or file) replacing the built-in ones")
    seed_file: str | None = field(None, doc="seed problems (orca_math): jsonl/csv rows, or GSM8K with seed_loader", input=True)
    seed_loader: str = field("jsonl", doc="how to read seed_file: jsonl, csv or gsm8k")
    seed_task: str | None = field(None, doc="built-in task that generates the seeds when no seed_file is given")
    seed_params: dict[str, Any] = field(factory=dict, doc="keyword arguments of the seed task generator")
    n: int = field(500, doc="seeds (orca_math; 0 = every row of seed_file) or instructions (mediflow)")
    rounds: int = field(2, doc="Suggester -> Editor rounds per seed (Orca-Math: 2)")
    edits_per_round: int = field(1, doc="Editor samples per round; each verified one becomes a row")
    solver_samples: int = field(2, doc="independent Solver samples per problem")
    agreement: int = field(2, doc="without a reference answer, keep when this many Solver samples agree")
    verifier: bool = field(False, doc="orca_math: a Verifier role must also accept each verified problem")
    keep_seeds: bool = field(False, doc="also keep each seed, solved by the Solver and checked against its answer")
    tasks: list[str] = field(factory=list, doc="mediflow tasks to cover (empty: all in the taxonomy)")
    document_types: list[str] = field(factory=list, doc="mediflow document types (empty: all)")
    output_formats: list[str] = field(factory=lambda: ["json"], doc="mediflow output formats: json, text, bullets")
    max_retries: int = field(2, doc="mediflow: new attempts after an invalid answer (bounded retry)")
    min_score: int = field(0, doc="mediflow: drop answers the judge grades below this (0: no judge)")
    max_new_tokens: int = field(512, doc="tokens per teacher answer at most")
    temperature: float = field(0.7, doc="teacher sampling temperature (independent samples need > 0)")
    top_p: float = field(0.95, doc="teacher nucleus sampling mass")
    prompt_format: str = field("plain", doc="how backends wrap prompts: plain or chat")
    max_chars: int = field(1800, doc="drop rows whose answer is longer (Orca-Math: 1,800; 0: no limit)")
    dedup: bool = field(True, doc="drop exact and near-duplicate prompts")
    near_dup_threshold: float = field(0.8, doc="MinHash Jaccard similarity at which a prompt is a near duplicate")
    shingle: int = field(5, doc="word n-gram size of the MinHash shingles")
    decontaminate: list[str] = field(factory=lambda: ["eval"], doc="evaluation sets to decontaminate against (eval = all)")
    test_file: str | None = field(None, doc="held-out rows to decontaminate against too (e.g. data.test_file)", input=True)
    ngram: int = field(13, doc="word n-gram length of the contamination check (GPT-3: 13)")
    overlap: float = field(0.8, doc="contaminated when shared n-grams cover this share of an evaluation item's words (Llama 2: 0.8)")
    concurrency: int = field(2, doc="backend calls in flight at once (a local model takes one at a time)")
    batch_size: int = field(8, doc="waiting prompts packed per backend call (openai sends them at once, local batches)")
    cache_dir: str | None = field(None, doc="answer cache folder (default: cache/ in the stage folder)")
    seed: int = field(0, doc="seed for teacher sampling, seed generation and shuffling")


OUTPUTS = {"train_file": "train.jsonl", "rejected": "rejected.jsonl", "stats": "stats.json"}


def check(cfg: Config) -> None:
    from slmkit.errors import ConfigError

    for name in ("rounds", "edits_per_round", "solver_samples", "agreement", "concurrency", "batch_size", "ngram",
                 "shingle"):
        if getattr(cfg, name) < (0 if name == "rounds" else 1):
            raise ConfigError(f"synth: {name} must be >= {0 if name == 'rounds' else 1}")
    if cfg.agreement > cfg.solver_samples:
        raise ConfigError(f"synth: agreement ({cfg.agreement}) cannot exceed solver_samples ({cfg.solver_samples})")
    if not 0 < cfg.near_dup_threshold <= 1:
        raise ConfigError("synth: near_dup_threshold must be in (0, 1]")
    if cfg.max_retries < 0 or cfg.n < 0:
        raise ConfigError("synth: max_retries and n must be >= 0")


def _pipeline(cfg: Config) -> Any:
    from slmkit.errors import ConfigError
    from slmkit.registry import resolve

    return resolve(PIPELINES, cfg.pipeline, "synth pipeline", ConfigError)


def journal_key(cfg: Config) -> str:
    """What the journal's records depend on: every setting except the filters and the speed knobs."""
    from slmkit.config import to_dict
    from slmkit.synth.engine import text_hash

    kept = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_JOURNAL_KEY}
    return text_hash(json.dumps(kept, sort_keys=True))


def make_teacher(cfg: Config, run_dir: Path) -> Any:
    """The :class:`~slmkit.synth.engine.Teacher`: one backend per distinct spec, shared by the roles using it."""
    from slmkit.backends import make_backend
    from slmkit.synth.engine import Cache, Teacher
    from slmkit.synth.roles import ROLES

    built: dict[str, Any] = {}

    def backend(spec: dict[str, Any]) -> Any:
        key = json.dumps(spec, sort_keys=True)
        if key not in built:
            built[key] = make_backend(spec)
        return built[key]

    unknown = set(cfg.role_backends) - set(ROLES)
    if unknown:
        from slmkit.errors import ConfigError

        raise ConfigError(f"synth: role_backends names unknown role(s) {sorted(unknown)} (roles: {', '.join(ROLES)})")
    default = backend(cfg.backend)
    per_role = {role: backend(spec) for role, spec in cfg.role_backends.items()}
    cache = Cache(cfg.cache_dir or run_dir / "cache")
    return Teacher(per_role, default, cache, cfg.concurrency, cfg.batch_size)


def generate(cfg: Config, run_dir: Path) -> tuple[list[tuple[str, dict]], dict[str, dict], dict[str, Any]]:
    """Run (or resume) every item: (items, id -> journal record, engine figures)."""
    from slmkit.synth.engine import Journal, run_items
    from slmkit.synth.roles import get_roles

    check(cfg)
    pipeline = _pipeline(cfg)
    roles = get_roles(cfg.templates)
    items = pipeline.make_items(cfg)
    teacher = make_teacher(cfg, run_dir)
    journal = Journal(run_dir / "journal.jsonl", journal_key(cfg))
    work = partial(pipeline.process, cfg=cfg, teacher=teacher, roles=roles)

    def summary(done: dict[str, dict]) -> str:
        rows = sum(len(r["rows"]) for r in done.values())
        return f"{rows} rows, {sum(len(r['rejects']) for r in done.values())} rejected"

    start = time.time()
    try:
        # Enough item threads to fill every batch of every call in flight (threads mostly wait on the teacher).
        threads = min(512, cfg.concurrency * cfg.batch_size)
        records = run_items(items, work, journal, threads, f"synth {cfg.pipeline}", summary)
    finally:
        teacher.close()
    used = {teacher.backend(r) for r in roles}
    engine = {**teacher.counts, "generation_s": round(time.time() - start, 3),
              "backends": sorted(b.name for b in used),
              "rule_based": sorted(b.name for b in used if getattr(b, "rule_based", False))}
    return items, records, engine


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import atomic_write_json, atomic_write_text, write_jsonl
    from slmkit.data.loaders import write_rows
    from slmkit.synth.filters import FilterSettings, NgramIndex, apply_filters
    from slmkit.synth.sources import eval_texts

    items, records, engine = generate(cfg, run_dir)
    ordered = [records[item_id] for item_id, _ in items if item_id in records]
    candidates = [row for record in ordered for row in record["rows"]]
    texts, sizes, missing = eval_texts(cfg.decontaminate, [cfg.test_file] if cfg.test_file else [])
    index = NgramIndex(texts, cfg.ngram) if texts else None
    settings = FilterSettings(cfg.max_chars, cfg.dedup, cfg.near_dup_threshold, cfg.shingle, overlap=cfg.overlap)
    rows, filtered, filter_counts = apply_filters(candidates, settings, index)
    rejects = [{"seed_id": r["id"], **x} for r in ordered for x in r["rejects"]]
    stats = summarize(_pipeline(cfg), items, ordered, rows, filter_counts, rejects)
    stats.update(engine=engine, decontamination={"sources": sizes, "missing": missing, "ngram": cfg.ngram,
                                                 "overlap": cfg.overlap})
    write_rows(run_dir / OUTPUTS["train_file"], rows)
    write_jsonl(run_dir / OUTPUTS["rejected"], rejects + filtered)
    atomic_write_json(run_dir / OUTPUTS["stats"], stats)
    atomic_write_text(run_dir / "report_section.md", report_section(cfg, stats))
    plot(stats, [r["completion"] for r in rows if r["meta"]["synth"]["round"] > 0],
         [p["seed"].get("completion", "") for _, p in items if "seed" in p], run_dir / "synth.png")
    headline = {k: v for k, v in stats.items() if not isinstance(v, dict)}
    return Result(metrics=headline)


def summarize(pipeline: Any, items: list, records: list[dict], rows: list[dict], filter_counts: Counter,
              rejects: list[dict]) -> dict[str, Any]:
    """Headline figures: rows, validity, dedup and contamination rates, rejection reasons (+ the pipeline's)."""
    verified = sum(len(r["rows"]) for r in records)
    candidates = sum(r["candidates"] for r in records)
    duplicates = filter_counts["filter:duplicate"] + filter_counts["filter:near_duplicate"]
    reasons = Counter(x["reason"] for x in rejects) + filter_counts
    return {
        "items": len(items), "rows": len(rows), "candidates": candidates, "verified": verified,
        "validity_rate": round(verified / candidates, 4) if candidates else 0.0,
        "dedup_rate": round(duplicates / verified, 4) if verified else 0.0,
        "contamination_rate": round(filter_counts["filter:contaminated"] / verified, 4) if verified else 0.0,
        **pipeline.extra_stats(items, records, rows),
        "rejections": dict(sorted(reasons.items())),
    }


def report_section(cfg: Config, stats: dict[str, Any]) -> str:
    """Markdown for the run report: figures and rejection reasons."""
    rule = stats["engine"]["rule_based"]
    note = f" ({', '.join(rule)}: RULE-BASED teacher, not a language model)" if rule else ""
    lines = [f"## synth ({cfg.pipeline})", "", f"Teacher backends: {', '.join(stats['engine']['backends'])}{note}", "",
             "| figure | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stats.items() if not isinstance(v, dict | list)]
    missing = stats["decontamination"]["missing"]
    if missing:  # a set that could not be read protected nothing: say so where people look
        lines += ["", f"**Not decontaminated against (files absent): {', '.join(missing)}**"]
    lines += ["", "| rejection reason | count |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in stats["rejections"].items()]
    return "\n".join(lines) + "\n"


def plot(stats: dict[str, Any], completions: list[str], seed_completions: list[str], path: Path) -> None:
    """``synth.png`` for the report: rejection reasons, and solution steps of seeds vs rows (or rows per task)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    import io

    from slmkit.artifacts import atomic_write_bytes
    from slmkit.synth.math_story import count_steps

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    reasons = stats["rejections"] or {"(none)": 0}
    left.barh(list(reasons), list(reasons.values()))
    left.set(title="rejected candidates by reason", xlabel="count")
    if "rows_by_task" in stats:
        right.barh(list(stats["rows_by_task"]), list(stats["rows_by_task"].values()))
        right.set(title="rows per task", xlabel="rows")
    else:
        steps = [count_steps(c) for c in seed_completions if c], [count_steps(c) for c in completions]
        bins = range(0, max([1, *steps[0], *steps[1]]) + 2)
        right.hist(steps, bins=bins, label=["seeds", "synthetic rows"], align="left")
        right.set(title="solution steps", xlabel="steps", ylabel="problems")
        right.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
