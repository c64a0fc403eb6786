"""Supervised fine-tuning (SFT) stage: completion-only cross-entropy for decoder-only and encoder–decoder models.

Starts from a model folder / hub id, or builds a fresh model from an architecture and preset with the
given tokenizer. Decoder-only models see prompt + completion with the prompt masked; encoder–decoder
models read the prompt in the encoder and learn the completion in the decoder. The loss is averaged over
the target tokens of each optimizer step (see ``loop``). Reads: jsonl rows (prompt, completion).
Writes: ``model/`` (model + tokenizer, safetensors), ``metrics.jsonl``, ``checkpoint/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result, stage_fingerprint
from slmkit.config import field
from slmkit.train.loop import TrainArgs


@dataclass(frozen=True, kw_only=True)
class Config(TrainArgs):
    train_file: str | None = field(None, doc="jsonl of rows with prompt and completion", input=True)
    val_file: str | None = field(None, doc="jsonl of held-out rows for the eval loss (optional)", input=True)
    model: str | None = field(None, doc="model folder or hub id to start from; unset builds arch/preset", input=True)
    tokenizer: str | None = field(None, doc="tokenizer folder or hub id (default: the model's own)", input=True)
    arch: str = field("decoder", doc="architecture to build when no model is given (see slmkit list archs)")
    preset: str = field("tiny", doc="size preset of the architecture")
    model_overrides: dict[str, Any] = field(factory=dict, doc="config fields that override the preset")
    prompt_format: str = field("plain", doc="prompt format: plain or chat")
    max_train_rows: int = field(0, doc="use at most this many training rows (0: all)")


OUTPUTS = {"model": "model", "tokenizer": "model"}


def load_or_build(cfg: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from ``cfg.model``/``cfg.tokenizer`` or built from ``cfg.arch``/``cfg.preset``."""
    from slmkit.errors import ConfigError
    from slmkit.models.build import build
    from slmkit.models.load import load_model, load_tokenizer

    source = cfg.tokenizer or cfg.model
    if source is None:
        raise ConfigError("set tokenizer (or model) so that the vocabulary is known")
    tokenizer = load_tokenizer(source)
    if cfg.model:
        model = load_model(cfg.model)
    else:
        model = build(cfg.arch, cfg.preset, tokenizer=tokenizer, overrides=cfg.model_overrides, seed=cfg.seed)
    return model, tokenizer


def encode_rows(rows: list[dict], tokenizer: Any, prompt_format: str) -> list[dict[str, list[int]]]:
    """Encode canonical rows into prompt/completion token ids."""
    from slmkit.data.format import encode_pair

    return [encode_pair(tokenizer, r["prompt"], r["completion"], prompt_format) for r in rows]


def sft_job(model: Any, tokenizer: Any, train_rows: list[dict], val_rows: list[dict] | None, cfg: Any) -> Any:
    """The loop's :class:`Job` for completion-only cross-entropy."""
    from functools import partial

    from slmkit.train.batching import collate, decoder_start, target_tokens
    from slmkit.train.loop import Job
    from slmkit.train.losses import cross_entropy_sum

    return Job(
        examples=encode_rows(train_rows, tokenizer, cfg.prompt_format),
        eval_examples=encode_rows(val_rows, tokenizer, cfg.prompt_format) if val_rows else None,
        collate=partial(collate, pad_id=tokenizer.pad_token_id, max_length=cfg.max_length,
                        decoder_start_id=decoder_start(model)),
        loss_fn=cross_entropy_sum,
        count_fn=target_tokens,
    )


def run(cfg: Config, run_dir: Path) -> Result:
    """Train and save ``run_dir/model``."""
    from slmkit.data.loaders import read_rows
    from slmkit.errors import ConfigError
    from slmkit.artifacts import is_main_process
    from slmkit.models.build import count_parameters
    from slmkit.models.load import save_model
    from slmkit.train.loop import train

    if not cfg.train_file:
        raise ConfigError("sft: train_file is not set (wire it with from: <data stage>)")
    rows = read_rows(cfg.train_file)
    if cfg.max_train_rows:
        rows = rows[:cfg.max_train_rows]
    val = read_rows(cfg.val_file) if cfg.val_file else None
    model, tokenizer = load_or_build(cfg)
    job = sft_job(model, tokenizer, rows, val, cfg)
    model, summary = train(model, job, cfg, run_dir, fingerprint=stage_fingerprint(run_dir))
    if is_main_process():
        save_model(model, tokenizer, run_dir / OUTPUTS["model"])
    return Result(metrics={**summary, "parameters": count_parameters(model), "train_rows": len(rows)})
