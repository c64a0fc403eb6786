"""The ``eval`` stage: the full evaluation harness of arXiv 2502.11569 over one or more models.

Reads model folders / hub ids (and models behind backends), task files (``slmkit.eval.taskspec``) and
optionally human labels. Writes ``results.sqlite`` (every generation, prediction and score — see
``slmkit.eval.store``), ``judge_cache.sqlite``, ``summary.json`` (mean ± sd and 95% CI per model × task
× strategy × method), ``report_section.md`` and ``accuracy_vs_footprint.png`` for the run report.
Re-running after a crash resumes from the store; nothing already generated is generated again.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.stages import output_path


@dataclass(frozen=True, kw_only=True)
class Config:
    model: str | None = field(None, doc="model folder or hub id (wired from a training stage)", input=True)
    tokenizer: str | None = field(None, doc="tokenizer of 'model' (default: the model's own)", input=True)
    models: list[str] = field(factory=list, doc="more model folders or hub ids, evaluated side by side")
    backends: list[dict[str, Any]] = field(factory=list, doc="models behind backends: {kind, name, ...}")
    tasks: list[str] = field(factory=lambda: ["gsm8k"], doc="eval task names (slmkit eval --list-tasks) or YAML paths")
    strategies: list[str] = field(factory=lambda: ["direct", "cot", "kshot", "kshot_cot"], doc="prompting strategies")
    methods: list[str] = field(factory=lambda: ["strict", "flexible"], doc="strict, flexible, judge, cascade")
    k_shot: int = field(4, doc="exemplars in k-shot strategies")
    seeds: list[int] = field(factory=lambda: [0, 1, 2], doc="independent repeats (sampling seed, few-shot draw)")
    limit: int = field(100, doc="items per task (the first N after the few-shot hold-out; 0 = all)")
    max_new_tokens: int = field(0, doc="generation budget (0 = the task's budget for the strategy)")
    temperature: float = field(0.0, doc="sampling temperature (0 = greedy)")
    top_p: float = field(1.0, doc="nucleus mass when sampling")
    batch_size: int = field(32, doc="prompts per generation batch")
    device: str = field("auto", doc="device of local models: auto (cuda if available), cpu, cuda, cuda:1, ...")
    prompt_format: str = field("plain", doc="plain or chat (the tokenizer's chat template)")
    judges: list[dict[str, Any]] = field(factory=list, doc="judge backends {kind, name?, prompt?, ...}")
    judge_max_new_tokens: int = field(8, doc="tokens a judge may write for its verdict")
    cascade_rules: Literal["strict", "flexible"] = field("strict", doc="rules tried before the judge")
    perturbations: list[str] = field(factory=list, doc="robustness kinds: numeric, digit_expansion, distractor, rephrase, typo")
    step_check: bool = field(True, doc="check a op b = c claims in every output")
    human_labels: str | None = field(None, doc="jsonl {question, response, gold, human} for judge agreement", input=True)
    human_labels_task: str = field("gsm8k", doc="task whose extractors and answer type score the labelled responses")
    compress: list[str] = field(factory=list, doc="also evaluate these variants of local models: int8, int4, pruned")
    measure_memory: bool = field(True, doc="measure resident memory of each local model variant (subprocess)")
    store: str = field("", doc="results SQLite file (default: results.sqlite in the stage folder)")
    data_source: Literal["auto", "local", "hub"] = field("auto", doc="read task data from the shared folder or the hub")


OUTPUTS = {"results": "results.sqlite", "summary": "summary.json"}
OUTPUT_FIELDS = {"results": "store"}  # a set ``store`` moves the results file there


def _check(cfg: Config) -> None:
    from slmkit.errors import ConfigError
    from slmkit.eval.compress import VARIANTS
    from slmkit.eval.perturb import PERTURBATIONS
    from slmkit.eval.prompts import STRATEGIES

    if not (cfg.model or cfg.models or cfg.backends):
        raise ConfigError("eval: set model, models or backends")
    for name, values, known in (("strategies", cfg.strategies, STRATEGIES), ("perturbations", cfg.perturbations,
                                PERTURBATIONS), ("compress", cfg.compress, VARIANTS),
                                ("methods", cfg.methods, ("strict", "flexible", "judge", "cascade"))):
        for value in values:
            if value not in known:
                raise ConfigError(f"eval: {name}: unknown '{value}' (known: {', '.join(known)})")
    if {"judge", "cascade"} & set(cfg.methods) and not cfg.judges:
        raise ConfigError("eval: methods judge/cascade need at least one entry in judges")
    if not cfg.seeds:
        raise ConfigError("eval: seeds must list at least one seed")


def _device(name: str) -> str:
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def model_names(paths: list[str]) -> list[str]:
    """Short distinct names: the shortest path tails that tell the models apart ("02_sft/model", not "model")."""
    parts = [[p for p in Path(path).parts if p not in ("/", ".")] or [path] for path in paths]
    depth = [1 if len(p) == 1 or p[-1] not in ("model", "final", "merged") else 2 for p in parts]
    while True:
        names = ["/".join(p[-d:]) for p, d in zip(parts, depth)]
        clash = [i for i, n in enumerate(names) if names.count(n) > 1 and depth[i] < len(parts[i])]
        if not clash:
            return names
        for i in clash:
            depth[i] += 1


def _local_subjects(path: str, tokenizer: str | None, variants: list[str], device: str = "cpu",
                    name: str | None = None) -> list[Any]:
    from slmkit.eval.compress import compress
    from slmkit.eval.harness import Subject
    from slmkit.models.generate import generate
    from slmkit.models.load import load_model, load_tokenizer
    from slmkit.models.prefix_decode import PrefixCachedDecoder

    from slmkit.models.build import count_parameters

    model, tok = load_model(path, device=device), load_tokenizer(tokenizer or path)
    name = name or model_names([path])[0]
    params = count_parameters(model)
    out = []
    for variant in ["original", *variants]:
        m = model if variant == "original" else compress(model, variant)
        runtime = PrefixCachedDecoder(m)  # k-shot prompts share their exemplars: prefill them once
        out.append(Subject(name if variant == "original" else f"{name}@{variant}",
                           lambda prompts, cfg, r=runtime: generate(r, tok, prompts, cfg, show_progress=False),
                           model=m, path=path, variant=variant, params=params))
    return out


def _subjects(cfg: Config) -> list[Any]:
    from slmkit.backends import make_backend
    from slmkit.eval.harness import Subject

    subjects = []
    paths = [p for p in [cfg.model, *cfg.models] if p]
    for i, (path, name) in enumerate(zip(paths, model_names(paths))):
        subjects += _local_subjects(path, cfg.tokenizer if i == 0 and cfg.model else None, cfg.compress,
                                    _device(cfg.device), name)
    for spec in cfg.backends:
        spec = dict(spec)
        name = str(spec.pop("name", "")) or f"{spec.get('kind')}:{spec.get('model', '')}"
        backend = make_backend(spec)
        subjects.append(Subject(name, backend.generate))
    names = [s.name for s in subjects]
    if len(set(names)) != len(names):
        from slmkit.errors import ConfigError

        raise ConfigError(f"eval: two models share the name '{[n for n in names if names.count(n) > 1][0]}' "
                          "(the same model listed twice, or a backend without a distinct name)")
    return subjects


def _judges(cfg: Config, run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """Judges by method key ('' when there is one) and the expanded method list."""
    from slmkit.eval.judges import Judge

    judges = [Judge(spec, run_dir / "judge_cache.sqlite", cfg.judge_max_new_tokens) for spec in cfg.judges]
    if len(judges) <= 1:
        return {"": j for j in judges}, list(cfg.methods)
    methods = [m for m in cfg.methods if m not in ("judge", "cascade")]
    methods += [f"{m}:{j.name}" for m in cfg.methods if m in ("judge", "cascade") for j in judges]
    return {j.name: j for j in judges}, methods


def _task_variants(cfg: Config) -> list[tuple[str, Any, list[dict], list[dict]]]:
    """(name, spec, items, pool) for each task and each of its perturbed variants."""
    from slmkit.eval.perturb import perturb_items
    from slmkit.eval.taskspec import load_items, load_spec

    out = []
    for task in cfg.tasks:
        spec = load_spec(task)
        items, pool = load_items(spec, cfg.data_source)
        items = items[:cfg.limit] if cfg.limit else items
        out.append((spec.name, spec, items, pool))
        for kind in cfg.perturbations:
            perturbed = perturb_items(items, kind)
            if perturbed:
                out.append((f"{spec.name}~{kind}", spec, perturbed, pool))
    return out


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.eval import summary as report
    from slmkit.eval.harness import Settings, run_cell
    from slmkit.eval.store import Store
    from slmkit.progress import progress

    _check(cfg)
    store_path = output_path(sys.modules[__name__], cfg, run_dir, "results")
    store = Store(store_path)
    tasks = _task_variants(cfg)
    judges, methods = _judges(cfg, run_dir)
    settings = Settings(cfg.strategies, methods, cfg.seeds, cfg.k_shot, cfg.max_new_tokens, cfg.temperature,
                        cfg.top_p, cfg.batch_size, cfg.prompt_format, cfg.cascade_rules, cfg.step_check)
    subjects = _subjects(cfg)
    cells = [(s, t, st, seed) for s in subjects for t in tasks for st in cfg.strategies for seed in cfg.seeds]
    with progress() as bar:
        job = bar.add_task("evaluating", total=len(cells), info="")
        for subject, (name, spec, items, pool), strategy, seed in cells:
            bar.update(job, info=f"{subject.name} {name} {strategy} seed {seed}")
            run_cell(store, subject, name, spec, items, pool, strategy, seed, settings, judges)
            bar.advance(job)
    for subject in subjects:
        report.record_footprint(store, subject, cfg.measure_memory)
    if cfg.human_labels:
        report.judge_agreement(store, cfg.human_labels, cfg.human_labels_task, judges)
    summary = report.write_outputs(store, run_dir, [t[0] for t in tasks])
    store.close()
    for judge in judges.values():
        judge.close()
    return Result(metrics=summary["headline"])
