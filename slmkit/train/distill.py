"""The ``distill`` stage: knowledge distillation from a frozen teacher into a student of any architecture.

The teacher is any decoder-only or encoder–decoder model (folder or hub id); the student is a model folder
or a fresh arch/preset — in particular a decoder-only teacher can teach an encoder–decoder student, as in
"Return of the Encoder" (Elfeki et al. 2025, arXiv 2501.16273, §3.3). Per target token the loss is

    α · τ² · D(teacher_τ ‖ student_τ)  +  (1 − α) · CE(gold)

summed over target tokens and averaged per target token by the shared loop (``losses`` holds D: forward KL,
reverse KL, generalised JSD(β), or ULD across tokenizers). α weighs the KD term as in the paper's reference
code (``loss = α·kd + (1−α)·ce``); unlike that code, padding and positions without a teacher prediction
are masked. Alignment of the teacher's next-token distributions to the student's target positions, for
any prompt lengths, padding side and either kind of model, is in ``kd_data``.

Target sources: ``gold`` completions; ``teacher`` completions generated once (greedy, sequence-level KD,
Kim & Rush 2016) and cached in the stage folder; and on-policy student samples: with probability λ
(``on_policy_fraction``) a micro-batch's targets are replaced by samples of the current student, generated
in one batch (GKD, Agarwal et al. 2024); such batches carry no gold CE term. Offline teacher mode caches
the teacher's top-k log-probs once (``kd_offline``) and trains every epoch from disk.

Compatibility is checked from configs and tokenizers before any weights are loaded. Reads: jsonl rows.
Writes: ``model/``, ``metrics.jsonl``, ``checkpoint/``, ``teacher_targets.jsonl`` (targets: teacher),
``teacher_topk/`` (offline mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result, stage_fingerprint
from slmkit.config import field
from slmkit.errors import ConfigError
from slmkit.train.loop import TrainArgs


@dataclass(frozen=True, kw_only=True)
class Config(TrainArgs):
    train_file: str | None = field(None, doc="jsonl of rows with prompt and completion", input=True)
    val_file: str | None = field(None, doc="jsonl of held-out rows for the eval loss (optional)", input=True)
    teacher: str | None = field(None, doc="teacher model folder or hub id (decoder-only or encoder–decoder)",
                                input=True)
    teacher_tokenizer: str | None = field(None, doc="teacher tokenizer (default: the teacher's own)")
    model: str | None = field(None, doc="student folder or hub id to start from; unset builds arch/preset",
                              input=True)
    tokenizer: str | None = field(None, doc="student tokenizer (default: the student's own, else the teacher's)",
                                  input=True)
    arch: str = field("encdec", doc="student architecture to build when no model is given")
    preset: str = field("pico", doc="size preset of the student architecture")
    model_overrides: dict[str, Any] = field(factory=dict, doc="student config fields that override the preset")
    prompt_format: str = field("plain", doc="student prompt format: plain or chat")
    teacher_prompt_format: str | None = field(None, doc="teacher prompt format (default: prompt_format)")
    loss: Literal["forward_kl", "reverse_kl", "jsd", "uld"] = field(
        "forward_kl", doc="KD term: forward/reverse KL, generalised JSD (beta), or ULD (different tokenizers)")
    beta: float = field(0.5, doc="JSD interpolation: 0 = forward KL, 1 = reverse KL (TRL/GKD convention)")
    temperature: float = field(1.0, doc="softmax temperature of both models in the KD term (scaled by T²)")
    alpha: float = field(0.9, doc="weight of the KD term; 1 − alpha weighs gold cross-entropy")
    targets: Literal["gold", "teacher"] = field("gold", doc="target texts: gold completions or teacher generations")
    teacher_max_new_tokens: int = field(256, doc="token budget of teacher-generated targets")
    on_policy_fraction: float = field(0.0, doc="λ: probability that a micro-batch uses student samples as targets")
    on_policy_temperature: float = field(1.0, doc="sampling temperature of on-policy student samples")
    on_policy_max_new_tokens: int = field(128, doc="token budget of on-policy student samples")
    teacher_mode: Literal["online", "offline"] = field(
        "online", doc="online: teacher forward every step; offline: cache its top-k log-probs once")
    top_k: int = field(32, doc="offline mode: teacher tokens kept per target position (the rest is one bin)")
    offline_dtype: Literal["float32", "float16"] = field("float32", doc="offline mode: storage type of log-probs")
    teacher_max_length: int = field(0, doc="teacher truncation (0: max_length, doubled for a decoder-only "
                                           "teacher of an encoder–decoder student)")
    teacher_padding_side: Literal["right", "left"] = field("right", doc="padding side of a decoder-only teacher")
    teacher_dtype: Literal["float32", "bfloat16", "float16"] = field("float32", doc="teacher weights dtype")
    max_train_rows: int = field(0, doc="use at most this many training rows (0: all)")


OUTPUTS = {"model": "model", "tokenizer": "model"}


@dataclass(frozen=True)
class Preflight:
    """What the configs and tokenizers say, before any weights are loaded."""

    student_tok: Any
    teacher_tok: Any
    shared_vocab: bool
    vocab: int  # common vocabulary (shared tokenizer), else the teacher's logits width
    teacher_encdec: bool
    student_encdec: bool


def same_tokenizer(a: Any, b: Any, probes: list[str]) -> bool:
    """True when two tokenizers map the same strings to the same ids (common id range and probe texts)."""
    common = min(len(a), len(b))
    va = {t: i for t, i in a.get_vocab().items() if i < common}
    vb = {t: i for t, i in b.get_vocab().items() if i < common}
    if va != vb or a.eos_token_id != b.eos_token_id:
        return False
    return all(a(p, add_special_tokens=False)["input_ids"] == b(p, add_special_tokens=False)["input_ids"]
               for p in probes)


def preflight(cfg: Config, rows: list[dict]) -> Preflight:
    """Check the teacher/student/loss combination from configs and tokenizers only; fail with what to do."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)

    from slmkit.models.build import make_config
    from slmkit.models.load import is_encoder_decoder, load_tokenizer

    if not cfg.teacher:
        raise ConfigError("distill: teacher is not set (a model folder or hub id, or wire it with from:)")
    _check_numbers(cfg)
    t_config = _config(cfg.teacher, "teacher")
    lm_types = {**MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, **MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES}
    if not is_encoder_decoder(t_config) and t_config.model_type not in lm_types:
        raise ConfigError(f"distill: teacher '{cfg.teacher}' is a '{t_config.model_type}' model without a "
                          "language-model head; use a decoder-only (causal LM) or encoder–decoder teacher")
    teacher_tok = load_tokenizer(cfg.teacher_tokenizer or cfg.teacher)
    student_tok = load_tokenizer(cfg.tokenizer or cfg.model or cfg.teacher_tokenizer or cfg.teacher)
    s_config = (_config(cfg.model, "student") if cfg.model else
                make_config(cfg.arch, cfg.preset, tokenizer=student_tok, overrides=cfg.model_overrides))
    for name, conf, tok in (("teacher", t_config, teacher_tok), ("student", s_config, student_tok)):
        width = _vocab_size(conf)
        if width < len(tok):
            raise ConfigError(f"distill: the {name} tokenizer has {len(tok)} tokens but the {name} model only "
                              f"{width} logits; use the tokenizer the {name} was trained with")
    shared = same_tokenizer(teacher_tok, student_tok, [r["completion"] for r in rows[:64]])
    _check_combination(cfg, shared, teacher_tok, student_tok)
    vocab = min(_vocab_size(t_config), _vocab_size(s_config)) if shared else _vocab_size(t_config)
    return Preflight(student_tok, teacher_tok, shared, vocab, is_encoder_decoder(t_config),
                     is_encoder_decoder(s_config))


def _check_numbers(cfg: Config) -> None:
    if not 0.0 <= cfg.alpha <= 1.0:
        raise ConfigError(f"distill: alpha must be in [0, 1], got {cfg.alpha}")
    if not 0.0 <= cfg.beta <= 1.0:
        raise ConfigError(f"distill: beta must be in [0, 1], got {cfg.beta}")
    if not 0.0 <= cfg.on_policy_fraction <= 1.0:
        raise ConfigError(f"distill: on_policy_fraction must be in [0, 1], got {cfg.on_policy_fraction}")
    if cfg.temperature <= 0:
        raise ConfigError(f"distill: temperature must be > 0, got {cfg.temperature}")
    if cfg.teacher_mode == "offline" and cfg.top_k < 1:
        raise ConfigError(f"distill: top_k must be ≥ 1 in offline mode, got {cfg.top_k}")


def _check_combination(cfg: Config, shared: bool, teacher_tok: Any, student_tok: Any) -> None:
    if not shared and cfg.loss != "uld":
        raise ConfigError(
            f"distill: the teacher tokenizer ({len(teacher_tok)} tokens) and the student tokenizer "
            f"({len(student_tok)} tokens) differ, so '{cfg.loss}' (which compares probabilities token by "
            "token) is undefined. Either set loss: uld (Universal Logit Distillation, aligned by character "
            "offsets) or give the student the teacher's tokenizer (tokenizer: <teacher folder>)")
    if cfg.loss == "uld" and cfg.teacher_mode == "offline":
        raise ConfigError("distill: loss uld needs the full teacher distribution; offline top-k mode caches "
                          "only k tokens per position. Use teacher_mode: online with loss: uld")
    if cfg.loss == "uld" and not (getattr(teacher_tok, "is_fast", False) and getattr(student_tok, "is_fast", False)):
        raise ConfigError("distill: loss uld aligns tokens by character offsets, which needs fast (Rust) "
                          "tokenizers for both models; load them with use_fast=True or convert them")
    if cfg.teacher_mode == "offline" and cfg.on_policy_fraction > 0:
        raise ConfigError("distill: on-policy student samples change every step, so a precomputed (offline) "
                          "teacher cannot score them. Set on_policy_fraction: 0 or teacher_mode: online")


def _config(path_or_id: str, what: str) -> Any:
    """A model's config only (no weights)."""
    from transformers import AutoConfig

    from slmkit.errors import ModelError
    from slmkit.models.registry import register_models

    register_models()  # slmkit's own architectures (encdec) must be known to AutoConfig
    if Path(path_or_id).exists() and not (Path(path_or_id) / "config.json").exists():
        raise ModelError(f"distill: {what} '{path_or_id}' is not a model folder: config.json is missing")
    try:
        return AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError) as err:
        raise ModelError(f"distill: cannot read the {what} config from '{path_or_id}': {err}") from err


def _vocab_size(config: Any) -> int:
    size = getattr(config, "vocab_size", None)
    if size is None and hasattr(config, "get_text_config"):
        size = getattr(config.get_text_config(decoder=True), "vocab_size", None)
    return int(size)


def make_loss(cfg: Config, teacher: Any, vocab: int) -> Any:
    """The loop's loss: α·KD + (1−α)·gold CE, summed over the student's target tokens."""
    import torch

    from slmkit.train.kd_data import student_side, teacher_logits, teacher_side
    from slmkit.train.losses import forward_logits, kd_sum_full, kd_sum_topk, token_logprobs, uld_sum

    def loss_fn(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        logits, labels = forward_logits(model, batch)
        logp, mask = token_logprobs(logits, labels)
        ce = -logp.sum()
        student, valid = student_side(logits, labels)
        if cfg.alpha == 0:
            kd, valid = ce * 0, torch.zeros_like(valid)
        elif "kd_values" in batch:
            width = min(student.shape[1], batch["kd_values"].shape[1])
            student, valid = student[:, :width], valid[:, :width] & batch["kd_valid"][:, :width]
            kd = kd_sum_topk(student, batch["kd_values"][:, :width], batch["kd_indices"][:, :width],
                             batch["kd_tail"][:, :width], valid, kind=cfg.loss, beta=cfg.beta,
                             temperature=cfg.temperature, vocab=vocab)
        else:
            if next(teacher.parameters()).device != logits.device:
                teacher.to(logits.device)
            target, t_valid = teacher_side(teacher_logits(teacher, batch), batch["teacher_target_pos"])
            width = min(student.shape[1], target.shape[1])
            student, target, valid = student[:, :width], target[:, :width], valid[:, :width] & t_valid[:, :width]
            kd = (uld_sum(student, target, valid, temperature=cfg.temperature) if cfg.loss == "uld" else
                  kd_sum_full(student, target, valid, kind=cfg.loss, beta=cfg.beta, temperature=cfg.temperature))
        gold = 1.0 - batch["on_policy"]
        total = cfg.alpha * kd + (1.0 - cfg.alpha) * gold * ce
        n = max(1, int(mask.sum()))
        return total, {"kd": kd.item() / max(1, int(valid.sum())), "ce": ce.item() / n,
                       "kd_coverage": int(valid.sum()) / n, "on_policy": float(batch["on_policy"])}

    return loss_fn


def teacher_targets(cfg: Config, teacher: Any, tokenizer: Any, rows: list[dict], run_dir: Path) -> list[dict]:
    """Rows whose completions are the teacher's greedy generations (sequence-level KD), cached on disk."""
    import hashlib
    import json

    from slmkit.artifacts import barrier, hash_input, is_main_process, read_jsonl, write_jsonl
    from slmkit.models.generate import GenerateConfig, generate

    fmt = cfg.teacher_prompt_format or cfg.prompt_format
    gen = GenerateConfig(max_new_tokens=cfg.teacher_max_new_tokens, batch_size=cfg.batch_size, prompt_format=fmt)
    key = hashlib.sha256(json.dumps([hash_input(cfg.teacher), [r["prompt"] for r in rows],
                                     cfg.teacher_max_new_tokens, fmt]).encode()).hexdigest()[:24]
    path = run_dir / "teacher_targets.jsonl"
    def cached() -> list[dict] | None:
        got = read_jsonl(path) if path.exists() else []
        ok = got and got[0].get("cache_key") == key and len(got) == len(rows) + 1
        return [{**r, "completion": c["completion"]} for r, c in zip(rows, got[1:])] if ok else None

    if (out := cached()) is not None:
        return out
    if is_main_process():  # one process generates; the others wait and read the file
        outs = generate(teacher, tokenizer, [r["prompt"] for r in rows], gen)
        write_jsonl(path, [{"cache_key": key}] + [{"prompt": r["prompt"], "completion": o.texts[0]}
                                                  for r, o in zip(rows, outs)])
    barrier()
    return cached()


def load_teacher(cfg: Config, device: Any) -> Any:
    """The frozen teacher on ``device``, in eval mode, without gradients."""
    import torch

    from slmkit.models.load import load_model

    dtype = None if cfg.teacher_dtype == "float32" else getattr(torch, cfg.teacher_dtype)
    teacher = load_model(cfg.teacher, dtype=dtype, device=str(device))
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def make_sides(cfg: Config, pre: Preflight, student: Any, teacher: Any) -> Any:
    """How each model reads the text (tokenizers, formats, truncation, decoder starts)."""
    from slmkit.train.batching import decoder_start
    from slmkit.train.kd_data import Sides

    teacher_len = cfg.teacher_max_length or cfg.max_length * (2 if pre.student_encdec and not pre.teacher_encdec
                                                                  else 1)
    return Sides(student_tok=pre.student_tok, teacher_tok=pre.teacher_tok, student_format=cfg.prompt_format,
                 teacher_format=cfg.teacher_prompt_format or cfg.prompt_format, student_max_length=cfg.max_length,
                 teacher_max_length=teacher_len, student_start=decoder_start(student),
                 teacher_start=decoder_start(teacher), teacher_padding_side=cfg.teacher_padding_side,
                 by_offsets=cfg.loss == "uld")


def offline_reader(cfg: Config, pre: Preflight, teacher: Any, examples: list[dict], collate: Any,
                   run_dir: Path) -> tuple[Any, float]:
    """Build (or reuse) the top-k cache of every example; returns the reader and the seconds spent."""
    import time

    from slmkit.artifacts import barrier, is_main_process
    from slmkit.train import kd_offline

    folder = run_dir / "teacher_topk"
    settings = {"k": cfg.top_k, "temperature": cfg.temperature, "vocab": pre.vocab, "dtype": cfg.offline_dtype,
                "teacher_max_length": collate.sides.teacher_max_length, "student_max_length": cfg.max_length,
                "padding": cfg.teacher_padding_side, "teacher_dtype": cfg.teacher_dtype}
    key = kd_offline.cache_key(cfg.teacher, examples, settings)
    began = time.time()
    index = kd_offline.load_index(folder, key)
    if index is None:
        if is_main_process():  # one process runs the teacher; the others wait and read the cache
            kd_offline.build_cache(folder, key, teacher, examples, collate, k=cfg.top_k, temperature=cfg.temperature,
                                   vocab=pre.vocab, batch_size=cfg.batch_size, dtype=cfg.offline_dtype)
        barrier()
        index = kd_offline.load_index(folder, key)
    return kd_offline.TopKReader(folder, index), time.time() - began


def run(cfg: Config, run_dir: Path) -> Result:
    """Distil the teacher into the student and save ``run_dir/model``."""
    import dataclasses

    from accelerate import PartialState

    from slmkit.artifacts import is_main_process
    from slmkit.data.loaders import read_rows
    from slmkit.models.build import count_parameters
    from slmkit.models.load import save_model
    from slmkit.train.batching import target_tokens
    from slmkit.train.kd_data import DistillCollate, encode_example
    from slmkit.train.loop import Job, train
    from slmkit.train.sft import load_or_build

    if not cfg.train_file:
        raise ConfigError("distill: train_file is not set (wire it with from: <data stage>)")
    rows = read_rows(cfg.train_file)
    rows = rows[:cfg.max_train_rows] if cfg.max_train_rows else rows
    val = read_rows(cfg.val_file) if cfg.val_file else []
    pre = preflight(cfg, rows)  # every compatibility error is raised here, before weights are read
    teacher = load_teacher(cfg, PartialState().device)
    student_cfg = dataclasses.replace(cfg, tokenizer=cfg.tokenizer or cfg.model or cfg.teacher_tokenizer or cfg.teacher)
    student, _ = load_or_build(student_cfg)
    sides = make_sides(cfg, pre, student, teacher)
    if cfg.targets == "teacher":
        rows = teacher_targets(cfg, teacher, pre.teacher_tok, rows, run_dir)
    examples = [encode_example(i, r["prompt"], r["completion"], sides) for i, r in enumerate(rows)]
    evals = [encode_example(len(rows) + i, r["prompt"], r["completion"], sides) for i, r in enumerate(val)]
    collate = DistillCollate(sides, student, on_policy=cfg.on_policy_fraction, seed=cfg.seed,
                             sample_temperature=cfg.on_policy_temperature,
                             sample_tokens=cfg.on_policy_max_new_tokens)
    extra: dict[str, Any] = {"teacher_parameters": count_parameters(teacher)}
    if cfg.teacher_mode == "offline":
        collate.reader, extra["offline_cache_s"] = offline_reader(cfg, pre, teacher, examples + evals, collate,
                                                                  run_dir)
        teacher = None  # the cache replaces the teacher: free its memory
    job = Job(examples=examples, eval_examples=evals or None, collate=collate,
              loss_fn=make_loss(cfg, teacher, pre.vocab), count_fn=target_tokens)
    student, summary = train(student, job, cfg, run_dir, fingerprint=stage_fingerprint(run_dir))
    metrics = {**summary, **extra, "parameters": count_parameters(student), "train_rows": len(rows),
               "shared_tokenizer": pre.shared_vocab, "teacher_encdec": pre.teacher_encdec,
               "student_encdec": pre.student_encdec}
    if is_main_process():
        save_model(student, pre.student_tok, run_dir / OUTPUTS["model"])
        write_report_section(cfg, metrics, run_dir)
    return Result(metrics=metrics)


def write_report_section(cfg: Config, metrics: dict[str, Any], run_dir: Path) -> None:
    """A short table for the run report: who taught whom, with which loss, how fast."""
    from slmkit.artifacts import atomic_write_text, read_metrics

    logged = [r for r in read_metrics(run_dir / "metrics.jsonl") if "kd" in r]
    coverage = sum(r["kd_coverage"] for r in logged) / max(1, len(logged))
    kinds = {True: "encoder–decoder", False: "decoder-only"}
    rows = [("teacher", f"{cfg.teacher} ({kinds[metrics['teacher_encdec']]}, "
                        f"{metrics['teacher_parameters']:,} parameters)"),
            ("student", f"{cfg.model or cfg.arch + '/' + cfg.preset} ({kinds[metrics['student_encdec']]}, "
                        f"{metrics['parameters']:,} parameters)"),
            ("loss", f"{cfg.alpha:g} × τ²·{cfg.loss}" + (f"(β={cfg.beta:g})" if cfg.loss == "jsd" else "")
                     + f" + {1 - cfg.alpha:g} × gold CE, τ = {cfg.temperature:g}"),
            ("targets", cfg.targets + (f", on-policy λ = {cfg.on_policy_fraction:g}" if cfg.on_policy_fraction else "")),
            ("teacher mode", cfg.teacher_mode + (f" (top-{cfg.top_k}, cache built in "
                                                 f"{metrics['offline_cache_s']:.1f} s)" if "offline_cache_s" in metrics else "")),
            ("tokenizers", "shared (common vocabulary)" if metrics["shared_tokenizer"] else "different (ULD)"),
            ("target tokens with a teacher prediction", f"{coverage:.1%}"),
            ("training tokens/s (teacher included)", f"{metrics.get('tokens_per_s', 0):,.0f}")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    atomic_write_text(run_dir / "report_section.md", f"### Distillation\n\n| | |\n|---|---|\n{table}\n")
