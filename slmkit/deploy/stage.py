"""The ``export`` stage (and ``slmkit export`` verb): convert a model to CTranslate2 and check it against PyTorch.

Reads a transformers model folder (or hub id) and its tokenizer; optionally a jsonl of rows whose prompts
drive the parity check (default: built-in math problems). Writes ``model/`` (the CTranslate2 folder, see
``slmkit.deploy.ctranslate2``), ``parity.jsonl`` (both runtimes' greedy outputs per prompt) and
``report_section.md``. Metrics: disk sizes, and greedy agreement with PyTorch fp32 —
``sequence_agreement`` (share of prompts whose generated tokens are identical) and ``token_agreement``
(share of generated positions before the first divergence, averaged over prompts). An fp32 export is
expected to agree exactly; int8 trades a little agreement for ~4x smaller weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field


@dataclass(frozen=True, kw_only=True)
class Config:
    model: str | None = field(None, doc="model folder or hub id to export", input=True)
    tokenizer: str | None = field(None, doc="tokenizer folder or hub id (default: the model's own)", input=True)
    test_file: str | None = field(None, doc="jsonl rows whose prompts check parity (default: built-in math)",
                                  input=True)
    format: str = field("ctranslate2", doc="runtime to export to: ctranslate2")
    quantization: str = field("int8", doc="weight type: int8, int8_float32, int16, float32, float16, bfloat16")
    check_prompts: int = field(32, doc="prompts in the parity check against PyTorch (0: skip the check)")
    max_new_tokens: int = field(32, doc="greedy tokens generated per prompt in the parity check")
    batch_size: int = field(8, doc="prompts per batch in the parity check")
    prompt_format: str = field("plain", doc="prompt format: plain or chat")
    threads: int = field(0, doc="CPU threads of the runtime (0: all cores)")


OUTPUTS = {"deployed": "model", "parity": "parity.jsonl"}
FORMATS = ("ctranslate2",)


def agreement(reference: list[list[int]], candidate: list[list[int]]) -> dict[str, float]:
    """Sequence- and token-level agreement of two runtimes' generated token ids."""
    same, shares = 0, []
    for a, b in zip(reference, candidate, strict=True):
        same += a == b
        prefix = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        shares.append(prefix / max(len(a), len(b), 1))
    n = max(len(reference), 1)
    return {"sequence_agreement": same / n, "token_agreement": sum(shares) / n}


def _prompts(cfg: Config) -> list[str]:
    from slmkit.data.loaders import read_rows
    from slmkit.data.tasks import get_task

    rows = read_rows(cfg.test_file) if cfg.test_file else get_task("math")(cfg.check_prompts, seed=1)
    return [r["prompt"] for r in rows[:cfg.check_prompts]]


def parity(model: Any, runtime: Any, tokenizer: Any, prompts: list[str], cfg: Config) -> list[dict]:
    """Greedy new-token ids of PyTorch and of the runtime for each prompt."""
    import torch

    from slmkit.data.format import encode_prompt
    from slmkit.models.generate import until_eos, pad_batch
    from slmkit.models.load import is_encoder_decoder

    encdec = is_encoder_decoder(model)
    records = []
    for start in range(0, len(prompts), cfg.batch_size):
        chunk = prompts[start:start + cfg.batch_size]
        ids = [encode_prompt(tokenizer, p, cfg.prompt_format) for p in chunk]
        input_ids, mask = pad_batch(ids, tokenizer.pad_token_id, left=not encdec)
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=cfg.max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id)
        new = out[:, 1:] if encdec else out[:, input_ids.shape[1]:]
        theirs = runtime.generate_ids(ids, cfg.max_new_tokens)
        for p, ours, other in zip(chunk, new.tolist(), theirs):
            records.append({"prompt": p, "pytorch": until_eos(ours, tokenizer.eos_token_id),
                            "runtime": until_eos(other, tokenizer.eos_token_id)})
    return records


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import atomic_write_text, write_jsonl
    from slmkit.deploy.ctranslate2 import CT2Model, disk_bytes, export
    from slmkit.errors import ConfigError
    from slmkit.models.load import load_model, load_tokenizer

    if not cfg.model:
        raise ConfigError("export: model is not set (give model=<folder or hub id>, or wire it with from:)")
    if cfg.format not in FORMATS:
        raise ConfigError(f"export: unknown format '{cfg.format}' (use one of {', '.join(FORMATS)})")
    out = export(cfg.model, run_dir / OUTPUTS["deployed"], cfg.quantization, cfg.tokenizer)
    metrics: dict[str, Any] = {"quantization": cfg.quantization, "disk_mb": disk_bytes(out) / 2**20}
    if Path(cfg.model).exists():
        metrics["source_disk_mb"] = disk_bytes(cfg.model) / 2**20
    if cfg.check_prompts:
        model, tokenizer = load_model(cfg.model), load_tokenizer(cfg.tokenizer or cfg.model)
        records = parity(model, CT2Model(out, threads=cfg.threads), tokenizer, _prompts(cfg), cfg)
        write_jsonl(run_dir / OUTPUTS["parity"], records)
        metrics.update(agreement([r["pytorch"] for r in records], [r["runtime"] for r in records]))
        metrics["check_prompts"] = len(records)
    atomic_write_text(run_dir / "report_section.md", _section(metrics))
    return Result(metrics=metrics)


def _section(m: dict[str, Any]) -> str:
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in m.items()]
    return (f"CTranslate2 export ({m['quantization']}); greedy agreement with PyTorch fp32 on the same "
            "prompts.\n\n" + "\n".join(lines) + "\n")
