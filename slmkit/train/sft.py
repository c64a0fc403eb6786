"""Supervised fine-tuning (SFT) stage: completion-only cross-entropy for decoder-only and encoder–decoder models.

Starts from a model folder / hub id, or builds a fresh model from an architecture and preset with the
given tokenizer. Decoder-only models see prompt + completion with the prompt masked; encoder–decoder
models read the prompt in the encoder and learn the completion in the decoder. The loss is averaged over
the target tokens of each optimizer step (see ``loop``).

Documents (rows whose whole text is the completion, e.g. ``data`` with ``documents``) can join the QA rows.
``schedule: mixed`` shuffles them together; ``schedule: pre_instruction`` is pre-instruction tuning (Jiang
et al. 2024, "Instruction-tuned Language Models are Better Knowledge Learners", arXiv 2402.12847, as
MediPhi trains its experts): the first ``pre_instruction_fraction`` of the steps see QA rows only, the rest
QA rows and documents mixed in proportion to their counts. ``replay_file`` rows (e.g. the base model's
general data) join the QA rows in both phases: experience replay, so that an expert trained from a base
stays close to it (less forgetting, smaller task vectors that merge better). The schedule is an ordering
of examples given to the one loop (a pure function of the stream position), so resume stays exact.
Reads: jsonl rows (prompt, completion), optional documents. Writes: ``model/`` (model + tokenizer,
safetensors), ``metrics.jsonl``, ``checkpoint/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
    documents_file: str | None = field(None, doc="jsonl of documents (whole text learnt) to train on too", input=True)
    schedule: Literal["mixed", "pre_instruction"] = field(
        "mixed", doc="mixed: QA rows and documents shuffled together; pre_instruction: QA first, then QA + documents")
    pre_instruction_fraction: float = field(0.5, doc="pre_instruction: share of the steps that see QA rows only")
    replay_file: str | None = field(None, doc="jsonl of earlier-task rows replayed among the QA rows (forgetting)",
                                    input=True)
    replay_rows: int = field(0, doc="how many replay_file rows join the QA rows (0: all of them)")


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


def sft_job(model: Any, tokenizer: Any, train_rows: list[dict], val_rows: list[dict] | None, cfg: Any,
            documents: list[dict] | None = None) -> Any:
    """The loop's :class:`Job` for completion-only cross-entropy (documents after the QA rows, scheduled)."""
    from functools import partial

    from slmkit.train.batching import collate, decoder_start, target_tokens
    from slmkit.train.loop import Job
    from slmkit.train.losses import cross_entropy_sum

    order = None
    if documents and cfg.schedule == "pre_instruction":
        qa_positions = round(cfg.pre_instruction_fraction * cfg.steps * cfg.batch_size)
        order = pre_instruction_order(len(train_rows), len(train_rows) + len(documents), qa_positions, cfg.seed)
    return Job(
        examples=encode_rows(train_rows + (documents or []), tokenizer, cfg.prompt_format),
        eval_examples=encode_rows(val_rows, tokenizer, cfg.prompt_format) if val_rows else None,
        collate=partial(collate, pad_id=tokenizer.pad_token_id, max_length=cfg.max_length,
                        decoder_start_id=decoder_start(model)),
        loss_fn=cross_entropy_sum,
        count_fn=target_tokens,
        order=order,
    )


def pre_instruction_order(n_qa: int, n_all: int, qa_positions: int, seed: int) -> Any:
    """Stream order of pre-instruction tuning: positions < ``qa_positions`` draw from the QA examples
    (indices < ``n_qa``) only, later ones from all ``n_all`` examples; each phase a seeded permutation per
    epoch, so the order is a pure function of (seed, position)."""
    from slmkit.train.loop import stream_indices

    qa_cache: dict[int, list[int]] = {}
    all_cache: dict[int, list[int]] = {}

    def order(start: int, size: int) -> list[int]:
        out = []
        for pos in range(start, start + size):
            if pos < qa_positions:
                out += stream_indices(n_qa, seed, pos, 1, qa_cache)
            else:
                out += stream_indices(n_all, seed + 1, pos - qa_positions, 1, all_cache)
        return out

    return order


def read_replay(cfg: Config) -> list[dict]:
    """The first ``replay_rows`` rows of ``replay_file`` (all when 0; none without a file)."""
    from slmkit.data.loaders import read_rows
    from slmkit.errors import ConfigError

    if cfg.replay_rows < 0:
        raise ConfigError(f"sft: replay_rows must be >= 0, got {cfg.replay_rows}")
    if not cfg.replay_file:
        if cfg.replay_rows:
            raise ConfigError("sft: replay_rows is set but replay_file is not")
        return []
    rows = read_rows(cfg.replay_file)
    return rows[:cfg.replay_rows] if cfg.replay_rows else rows


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
    documents = read_rows(cfg.documents_file) if cfg.documents_file else []
    if cfg.schedule == "pre_instruction" and not documents:
        raise ConfigError("sft: schedule pre_instruction needs documents (documents_file, e.g. from a data stage "
                          "with documents: N)")
    if not 0 < cfg.pre_instruction_fraction < 1:
        raise ConfigError(f"sft: pre_instruction_fraction must be in (0, 1), got {cfg.pre_instruction_fraction}")
    replay = read_replay(cfg)
    rows = rows + replay
    model, tokenizer = load_or_build(cfg)
    job = sft_job(model, tokenizer, rows, val, cfg, documents)
    model, summary = train(model, job, cfg, run_dir, fingerprint=stage_fingerprint(run_dir))
    if is_main_process():
        save_model(model, tokenizer, run_dir / OUTPUTS["model"])
    return Result(metrics={**summary, "parameters": count_parameters(model), "train_rows": len(rows),
                           "documents": len(documents), "replay_rows": len(replay)})
