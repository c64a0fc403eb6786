"""The ``preference`` stage: DPO, IPO and KTO alignment for decoder-only and encoder–decoder models.

DPO (Rafailov et al. 2023, arXiv 2305.18290) with optional cDPO label smoothing, IPO (Azar et al. 2023,
arXiv 2310.12036) and KTO (Ethayarajh et al. 2024, arXiv 2402.01306) share one path: rows are encoded
into (prompt, completion) token lists, the reference model scores every completion once before training
(cached in the stage folder as ``ref_logps_*.json``, so a resumed run does not redo it), and the shared loop
trains with a loss from ``losses.py``. Completion log-probs come from ``losses.sequence_logprobs`` for both
architecture kinds, so encoder–decoder models (which TRL no longer aligns) take the same code path.
KTO's KL reference point z0 is estimated from mismatched (prompt, other completion) pairs: each row gets
a partner row of another prompt by a seeded shuffle, so its reference log-prob can be cached too.
The reference defaults to the starting model; LoRA (peft) is optional and merged into the saved model.
Reads: jsonl pairs ``{prompt, chosen, rejected}`` or KTO rows ``{prompt, completion, label}``.
Writes: ``model/``, ``metrics.jsonl``, ``checkpoint/``, ``ref_logps_*.json`` (and ``adapter/`` with LoRA).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

from slmkit.artifacts import Result, atomic_write_json, read_json, stage_fingerprint
from slmkit.config import field
from slmkit.errors import ConfigError
from slmkit.train.loop import TrainArgs

# The two sequences of an encoded example that the reference scores, per data kind.
SLOTS = {"pair": ("chosen", "rejected"), "kto": ("completion", "kl")}


@dataclass(frozen=True, kw_only=True)
class PreferenceArgs(TrainArgs):
    """What any preference-trained stage needs on top of the loop's arguments (also used by ``practice``)."""

    lr: float = field(5e-5, doc="peak learning rate (smaller than for SFT: the policy starts good)")
    method: Literal["dpo", "ipo", "kto"] = field("dpo", doc="loss: dpo (sigmoid), ipo or kto")
    beta: float = field(0.1, doc="strength of the pull towards the reference (DPO/KTO β, IPO τ)")
    label_smoothing: float = field(0.0, doc="DPO only: assumed probability that a preference is flipped (cDPO)")
    sft_weight: float = field(0.0, doc="DPO/IPO: weight of the chosen answer's per-token NLL (RPO; 0: none)")
    dpop_lambda: float = field(0.0, doc="DPO only: DPO-Positive λ, penalty on the chosen answer becoming less "
                               "likely than under the reference (Pal et al. 2024; 0: none; paper: 50)")
    desirable_weight: float = field(1.0, doc="KTO λ_D (0: balance λ_D·n_desirable = λ_U·n_undesirable)")
    undesirable_weight: float = field(1.0, doc="KTO λ_U, weight of undesirable completions")
    precompute_ref: bool = field(True, doc="score the reference once before training (else every step)")
    lora_r: int = field(0, doc="LoRA rank through peft (0: train all weights)")
    lora_alpha: float = field(16.0, doc="LoRA scaling numerator")
    lora_dropout: float = field(0.0, doc="dropout on the LoRA input")
    lora_targets: list[str] = field(factory=list, doc="module names LoRA adapts (empty: all linear layers)")
    prompt_format: str = field("plain", doc="prompt format: plain or chat")


@dataclass(frozen=True, kw_only=True)
class Config(PreferenceArgs):
    train_file: str | None = field(None, doc="jsonl of pairs (prompt, chosen, rejected); kto also takes "
                                   "rows (prompt, completion, label)", input=True)
    val_file: str | None = field(None, doc="jsonl of held-out pairs/rows for the eval loss (optional)", input=True)
    model: str | None = field(None, doc="model folder or hub id to align (e.g. the SFT model)", input=True)
    tokenizer: str | None = field(None, doc="tokenizer folder or hub id (default: the model's own)", input=True)
    reference: str | None = field(None, doc="reference model folder or hub id (default: the starting model)",
                                  input=True)
    max_train_rows: int = field(0, doc="use at most this many training pairs/rows (0: all)")


OUTPUTS = {"model": "model", "tokenizer": "model"}


def kind(method: str) -> str:
    """Data kind of a method: ``pair`` (DPO, IPO) or ``kto``."""
    return "kto" if method == "kto" else "pair"


def kl_partners(prompts: list[str], seed: int) -> list[int]:
    """For each row, another row with a different prompt (a seeded shuffle, each row takes the next one)."""
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    partners = []
    where = {i: pos for pos, i in enumerate(order)}
    for i in range(len(prompts)):
        pos = where[i]
        later = (order[(pos + s) % len(order)] for s in range(1, len(order)))
        partners.append(next((j for j in later if prompts[j] != prompts[i]), i))
    return partners


def encode(rows: list[dict], tokenizer: Any, method: str, prompt_format: str, seed: int) -> list[dict]:
    """Token ids of every example: ``{chosen, rejected}`` pairs, or ``{completion, kl, label}`` for KTO."""
    from slmkit.data.format import encode_completion, encode_pair, encode_prompt

    if kind(method) == "pair":
        out = []
        for r in rows:
            prompt = encode_prompt(tokenizer, r["prompt"], prompt_format)
            out.append({"chosen": {"prompt_ids": prompt, "completion_ids": encode_completion(tokenizer, r["chosen"])},
                        "rejected": {"prompt_ids": prompt,
                                     "completion_ids": encode_completion(tokenizer, r["rejected"])}})
        return out
    encoded = [encode_pair(tokenizer, r["prompt"], r["completion"], prompt_format) for r in rows]
    partners = kl_partners([r["prompt"] for r in rows], seed)
    return [{"completion": e, "label": bool(r["label"]),
             "kl": {"prompt_ids": e["prompt_ids"], "completion_ids": encoded[j]["completion_ids"]}}
            for e, r, j in zip(encoded, rows, partners)]


def collate_examples(examples: list[dict], base: Any, method: str) -> dict[str, Any]:
    """The loss's batch layout (see ``losses.py``) from encoded examples, with cached reference values."""
    import torch

    if kind(method) == "pair":
        batch = base([e["chosen"] for e in examples] + [e["rejected"] for e in examples])
        if "ref" in examples[0]:
            batch["ref_logps"] = torch.tensor([e["ref"][0] for e in examples] + [e["ref"][1] for e in examples])
        return batch
    batch = base([e["completion"] for e in examples])
    batch.update({f"kl_{k}": v for k, v in base([e["kl"] for e in examples]).items()})
    batch["kto_label"] = torch.tensor([e["label"] for e in examples])
    if "ref" in examples[0]:
        batch["ref_logps"] = torch.tensor([e["ref"][0] for e in examples])
        batch["ref_kl_logps"] = torch.tensor([e["ref"][1] for e in examples])
    return batch


def score(model: Any, sequences: list[dict], base: Any, batch_size: int) -> list[float]:
    """Summed completion log-probs of encoded sequences (no gradient, model in eval mode)."""
    import torch

    from slmkit.train.losses import sequence_logprobs

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(sequences), batch_size):
            batch = {k: v.to(device) for k, v in base(sequences[i:i + batch_size]).items()}
            out.extend(sequence_logprobs(model, batch)[0].float().tolist())
    model.train(was_training)
    return out


def attach_reference(examples: list[dict], ref_model: Any, base: Any, method: str, batch_size: int,
                     cache: Path, ref_id: str) -> None:
    """Add ``ref`` (the reference log-prob of each slot) to every example, from ``cache`` when it matches."""
    slots = SLOTS[kind(method)]
    blob = json.dumps([ref_id, [[e[s] for s in slots] for e in examples]], sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()
    cached = read_json(cache) if cache.exists() else {}
    values = cached.get("values") if cached.get("key") == key else None
    if values is None:
        columns = [score(ref_model, [e[s] for e in examples], base, batch_size) for s in slots]
        values = [list(v) for v in zip(*columns)]
        atomic_write_json(cache, {"key": key, "reference": ref_id, "values": values})
    for example, value in zip(examples, values):
        example["ref"] = value


def loss_function(cfg: PreferenceArgs, weights: tuple[float, float]) -> Any:
    """The loop's loss for ``cfg.method`` (a sum over pairs, or over KTO rows)."""
    from slmkit.train.losses import kto_loss_sum, pair_loss_sum

    if cfg.method == "kto":
        return partial(kto_loss_sum, beta=cfg.beta, desirable_weight=weights[0], undesirable_weight=weights[1])
    return partial(pair_loss_sum, method=cfg.method, beta=cfg.beta, label_smoothing=cfg.label_smoothing,
                   sft_weight=cfg.sft_weight, dpop_lambda=cfg.dpop_lambda)


def live_reference(loss: Any, ref_model: Any) -> Any:
    """Wrap ``loss`` so the reference model scores each batch as it comes (``precompute_ref: false``)."""
    import torch

    from slmkit.train.losses import sequence_logprobs

    def with_reference(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        ref_model.to(batch["input_ids"].device).eval()
        batch = dict(batch)
        with torch.no_grad():
            batch["ref_logps"] = sequence_logprobs(ref_model, batch)[0]
            if "kl_input_ids" in batch:
                kl = {k[3:]: v for k, v in batch.items() if k.startswith("kl_")}
                batch["ref_kl_logps"] = sequence_logprobs(ref_model, kl)[0]
        return loss(model, batch)

    return with_reference


def units(method: str, batch: dict[str, Any]) -> int:
    """Pairs (DPO, IPO) or rows (KTO) in a batch: what the loss sums over."""
    rows = int(batch["input_ids"].shape[0])
    return rows // 2 if kind(method) == "pair" else rows


def kto_weights(cfg: PreferenceArgs, rows: list[dict]) -> tuple[float, float]:
    """(λ_D, λ_U); λ_D = 0 asks for λ_D·n_D = λ_U·n_U, the low end of KTO's recommended range (Eq. 8)."""
    if cfg.method != "kto" or cfg.desirable_weight > 0:
        return cfg.desirable_weight, cfg.undesirable_weight
    good = sum(bool(r["label"]) for r in rows)
    return cfg.undesirable_weight * max(1, len(rows) - good) / max(1, good), cfg.undesirable_weight


def check_args(cfg: PreferenceArgs) -> None:
    """Refuse values that make a loss meaningless, naming the field."""
    if cfg.beta <= 0:
        raise ConfigError(f"beta must be > 0, got {cfg.beta}")
    if not 0.0 <= cfg.label_smoothing < 0.5:
        raise ConfigError(f"label_smoothing must be in [0, 0.5), got {cfg.label_smoothing}")
    if cfg.label_smoothing and cfg.method != "dpo":
        raise ConfigError(f"label_smoothing applies to method dpo only (method is {cfg.method})")
    if cfg.dpop_lambda < 0 or (cfg.dpop_lambda and cfg.method != "dpo"):
        raise ConfigError(f"dpop_lambda must be >= 0 and applies to method dpo only (method is {cfg.method})")
    if cfg.sft_weight < 0 or (cfg.sft_weight and cfg.method == "kto"):
        raise ConfigError(f"sft_weight must be >= 0 and applies to dpo/ipo only (method is {cfg.method})")
    if cfg.desirable_weight < 0 or cfg.undesirable_weight <= 0:
        raise ConfigError("desirable_weight must be >= 0 and undesirable_weight > 0")


def disable_dropout(model: Any) -> None:
    """Dropout would make policy and reference log-probs of the same text differ at β-scale (TRL does this too)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def add_lora(model: Any, cfg: PreferenceArgs) -> Any:
    """Wrap ``model`` with LoRA adapters; only they are trained."""
    from peft import LoraConfig, TaskType, get_peft_model

    from slmkit.models.load import is_encoder_decoder

    task = TaskType.SEQ_2_SEQ_LM if is_encoder_decoder(model) else TaskType.CAUSAL_LM
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, task_type=task,
                      target_modules=list(cfg.lora_targets) or "all-linear")
    return get_peft_model(model, lora)


def align(model: Any, tokenizer: Any, train_rows: list[dict], val_rows: list[dict] | None, cfg: PreferenceArgs,
          run_dir: Path, *, reference: Any = None, ref_id: str, fingerprint: str = "",
          on_step: Any = None) -> tuple[Any, dict[str, float]]:
    """Train ``model`` on preference rows against ``reference`` (default: ``model`` as it is now).

    ``ref_id`` names the reference's weights (e.g. a content hash) so its cached log-probs are only reused
    for the same reference and data. Returns the trained (LoRA-merged) model and the loop's summary.
    """
    from slmkit.train.batching import collate, decoder_start
    from slmkit.train.loop import Job, train

    check_args(cfg)
    disable_dropout(model)
    base = partial(collate, pad_id=tokenizer.pad_token_id, max_length=cfg.max_length,
                   decoder_start_id=decoder_start(model))
    train_ex = encode(train_rows, tokenizer, cfg.method, cfg.prompt_format, cfg.seed)
    val_ex = encode(val_rows, tokenizer, cfg.method, cfg.prompt_format, cfg.seed) if val_rows else None
    weights = kto_weights(cfg, train_rows)
    loss = loss_function(cfg, weights)
    if cfg.precompute_ref:
        micro = max(1, cfg.batch_size // cfg.grad_accum)
        for name, examples in (("train", train_ex), ("val", val_ex)):
            if examples:
                attach_reference(examples, reference if reference is not None else model, base, cfg.method,
                                 micro, run_dir / f"ref_logps_{name}.json", ref_id)
        reference = None  # its log-probs are cached: free it before training
    else:
        loss = live_reference(loss, reference if reference is not None else copy.deepcopy(model))
    if cfg.lora_r:
        model = add_lora(model, cfg)
    job = Job(examples=train_ex, eval_examples=val_ex, loss_fn=loss, count_fn=partial(units, cfg.method),
              collate=partial(collate_examples, base=base, method=cfg.method))
    model, summary = train(model, job, cfg, run_dir, fingerprint=fingerprint, on_step=on_step)
    if cfg.lora_r:
        model.save_pretrained(run_dir / "adapter")
        model = model.merge_and_unload()
    if cfg.method == "kto":
        summary.update(desirable_weight=weights[0], undesirable_weight=weights[1])
    return model, summary


def read_train_rows(path: str, method: str) -> list[dict]:
    """Pairs for DPO/IPO; labelled rows (or unpaired pairs) for KTO."""
    from slmkit.data.preference import read_kto, read_pairs

    return read_kto(path) if method == "kto" else read_pairs(path)


def run(cfg: Config, run_dir: Path) -> Result:
    """Align ``cfg.model`` and save ``run_dir/model``."""
    from slmkit.artifacts import hash_input
    from slmkit.models.build import count_parameters
    from slmkit.models.load import load_model, load_tokenizer, save_model

    if not cfg.train_file or not cfg.model:
        raise ConfigError("preference: train_file and model must be set (wire them with from:)")
    rows = read_train_rows(cfg.train_file, cfg.method)
    rows = rows[:cfg.max_train_rows] if cfg.max_train_rows else rows
    val = read_train_rows(cfg.val_file, cfg.method) if cfg.val_file else None
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model)
    model = load_model(cfg.model)
    ref_id = hash_input(cfg.reference or cfg.model)
    model, summary = align(model, tokenizer, rows, val, cfg, run_dir, ref_id=ref_id,
                           reference=load_model(cfg.reference) if cfg.reference else None,
                           fingerprint=stage_fingerprint(run_dir))
    save_model(model, tokenizer, run_dir / OUTPUTS["model"])
    outputs = {"adapter": str(run_dir / "adapter")} if cfg.lora_r else {}
    return Result(metrics={**summary, "train_rows": len(rows), "parameters": count_parameters(model)},
                  outputs=outputs)
