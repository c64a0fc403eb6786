"""The ``exact_match`` stage: greedy generation on a test split, answer extraction and exact match.

The minimal evaluation of the foundation: the full harness (strategies, judges, repeats) is the ``eval``
stage. Reads: a model folder (with its tokenizer) and a jsonl of rows with ``answer``. Writes:
``predictions.jsonl`` (prompt, output, extracted, gold, correct) and accuracy / parse-failure rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmkit.artifacts import Result
from slmkit.config import field


@dataclass(frozen=True, kw_only=True)
class Scoring:
    """How answers are generated and scored (shared by every exact-match stage)."""

    extractor: str = field("hash", doc="answer extractor (see slmkit.eval.extractors)")
    max_new_tokens: int = field(128, doc="generation budget per answer")
    batch_size: int = field(32, doc="prompts per generation batch")
    prompt_format: str = field("plain", doc="prompt format: plain or chat")
    limit: int = field(0, doc="evaluate at most this many rows (0: all)")


@dataclass(frozen=True, kw_only=True)
class Config(Scoring):
    model: str | None = field(None, doc="model folder or hub id", input=True)
    tokenizer: str | None = field(None, doc="tokenizer (default: the model's own)", input=True)
    test_file: str | None = field(None, doc="jsonl rows with prompt and answer", input=True)


OUTPUTS = {"predictions": "predictions.jsonl"}


def evaluate(model, tokenizer, rows: list[dict], cfg: Scoring) -> tuple[list[dict], dict[str, float]]:
    """Predictions and metrics for ``rows`` (greedy decoding)."""
    from slmkit.eval.extractors import EXTRACTORS, is_correct
    from slmkit.models.generate import GenerateConfig, generate

    extract = EXTRACTORS[cfg.extractor]
    gen = GenerateConfig(max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                         prompt_format=cfg.prompt_format)
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], gen)
    preds = []
    for row, out in zip(rows, outputs):
        extracted = extract(out.texts[0])
        preds.append({"prompt": row["prompt"], "output": out.texts[0], "extracted": extracted,
                      "gold": row["answer"], "correct": is_correct(extracted, row["answer"]),
                      "meta": row.get("meta", {})})
    n = max(1, len(preds))
    metrics = {"accuracy": sum(p["correct"] for p in preds) / n,
               "parse_failure_rate": sum(p["extracted"] is None for p in preds) / n,
               "n": len(preds)}
    return preds, metrics


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import write_jsonl
    from slmkit.data.loaders import read_rows
    from slmkit.errors import ConfigError
    from slmkit.eval.extractors import EXTRACTORS
    from slmkit.models.load import load_model, load_tokenizer

    if not cfg.model or not cfg.test_file:
        raise ConfigError("exact_match: model and test_file must be set (wire them with from:)")
    if cfg.extractor not in EXTRACTORS:
        raise ConfigError(f"exact_match: unknown extractor '{cfg.extractor}' (known: {', '.join(EXTRACTORS)})")
    rows = read_rows(cfg.test_file)
    rows = rows[:cfg.limit] if cfg.limit else rows
    missing = [i for i, r in enumerate(rows) if not r.get("answer")]
    if missing:
        raise ConfigError(f"exact_match: {cfg.test_file} row {missing[0] + 1} has no 'answer'")
    model = load_model(cfg.model)
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    preds, metrics = evaluate(model, tokenizer, rows, cfg)
    write_jsonl(run_dir / OUTPUTS["predictions"], preds)
    return Result(metrics=metrics)
