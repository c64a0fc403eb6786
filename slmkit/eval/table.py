"""The ``exact_match_table`` stage: every model of a pipeline on every test set, in one report table.

MediPhi evaluates after each step of expert → merge → align; here one stage takes the models of all those
stages (``models: {label: {from: stage.model}}``) and the test sets (``test_files: {label: path}``), runs
greedy exact match (``exact_match.evaluate``) on each pair, and writes the accuracy matrix with each
model's change over the ``baseline`` model. Reads: model folders, jsonl rows with ``answer``. Writes:
``scores.json`` (accuracy, parse-failure rate per model and test), ``predictions/<model>__<test>.jsonl``,
``report_section.md`` (the table, for the run report) and ``scores.png``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.eval.exact_match import Scoring


@dataclass(frozen=True, kw_only=True)
class Config(Scoring):
    models: dict[str, str] = field(factory=dict, doc="label -> model folder or hub id, in table order", input=True)
    test_files: dict[str, str] = field(factory=dict, doc="label -> jsonl rows with prompt and answer", input=True)
    baseline: str | None = field(None, doc="label of the model the other rows are compared with (default: first)")


OUTPUTS = {"scores": "scores.json"}


def check(cfg: Config) -> None:
    from slmkit.errors import ConfigError
    from slmkit.eval.extractors import EXTRACTORS

    if not cfg.models or not cfg.test_files:
        raise ConfigError("exact_match_table: set models and test_files (label -> path, or {from: stage.output})")
    if cfg.baseline is not None and cfg.baseline not in cfg.models:
        raise ConfigError(f"exact_match_table: baseline '{cfg.baseline}' is not one of the models "
                          f"({', '.join(cfg.models)})")
    if cfg.extractor not in EXTRACTORS:
        raise ConfigError(f"exact_match_table: unknown extractor '{cfg.extractor}' (known: {', '.join(EXTRACTORS)})")


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import atomic_write_json, atomic_write_text, write_jsonl
    from slmkit.data.loaders import read_rows
    from slmkit.eval.exact_match import evaluate
    from slmkit.models.load import load_model, load_tokenizer

    check(cfg)
    tests = {label: read_rows(path)[:cfg.limit or None] for label, path in cfg.test_files.items()}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for label, path in cfg.models.items():
        model, tokenizer = load_model(path), load_tokenizer(path)
        scores[label] = {}
        for test, rows in tests.items():
            preds, metrics = evaluate(model, tokenizer, rows, cfg)
            write_jsonl(run_dir / "predictions" / f"{label}__{test}.jsonl", preds)
            scores[label][test] = metrics
    atomic_write_json(run_dir / OUTPUTS["scores"], scores)
    baseline = cfg.baseline or next(iter(cfg.models))
    atomic_write_text(run_dir / "report_section.md", markdown(scores, baseline))
    plot(scores, run_dir / "scores.png")
    flat = {f"{m}/{t}": s["accuracy"] for m, row in scores.items() for t, s in row.items()}
    return Result(metrics=flat)


def markdown(scores: dict[str, dict[str, dict[str, Any]]], baseline: str) -> str:
    """Accuracy (%) per model and test, with the change over the baseline model in brackets."""
    tests = list(next(iter(scores.values())))
    lines = ["Exact-match accuracy (%) of every model on every test set; in brackets, the change in points "
             f"over **{baseline}**.", "", "| model | " + " | ".join(tests) + " |",
             "|---|" + "---|" * len(tests)]
    for model, row in scores.items():
        cells = []
        for test in tests:
            value = 100 * row[test]["accuracy"]
            delta = value - 100 * scores[baseline][test]["accuracy"]
            cells.append(f"{value:.1f}" if model == baseline else f"{value:.1f} ({delta:+.1f})")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(scores: dict[str, dict[str, dict[str, Any]]], path: Path) -> None:
    """Grouped bars: one group per test set, one bar per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    models, tests = list(scores), list(next(iter(scores.values())))
    width = 0.8 / len(models)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(tests) * len(models) / 3), 3.5))
    for i, model in enumerate(models):
        xs = [t + i * width for t in range(len(tests))]
        ax.bar(xs, [100 * scores[model][t]["accuracy"] for t in tests], width, label=model)
    ax.set_xticks([t + 0.4 - width / 2 for t in range(len(tests))], tests)
    ax.set(ylabel="exact match (%)", title="accuracy after every stage")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
