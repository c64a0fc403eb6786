"""One batched ``generate()`` for every model: decoder-only and encoder–decoder transformers models, and
any runtime backend that implements ``generate_texts(tokenizer, prompts, cfg)`` (e.g. CTranslate2).

Greedy (temperature 0) or sampling with temperature and top-p, ``n`` samples per prompt, a token budget,
stop strings and a seed. Prompts are sorted by length into batches (less padding), decoder-only inputs
are left-padded, and results come back in input order with the number of generated tokens of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slmkit.config import field


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    max_new_tokens: int = field(128, doc="tokens generated at most per sample")
    temperature: float = field(0.0, doc="sampling temperature; 0 means greedy decoding")
    top_p: float = field(1.0, doc="nucleus sampling mass (used when temperature > 0)")
    n: int = field(1, doc="samples per prompt")
    stop: list[str] = field(factory=list, doc="strings that end a sample (the stop string is cut off)")
    seed: int = field(0, doc="seed for sampling")
    batch_size: int = field(32, doc="prompts per forward batch")
    prompt_format: str = field("plain", doc="prompt format: plain or chat")


@dataclass
class Generation:
    """The samples for one prompt."""

    prompt: str
    texts: list[str]
    n_tokens: list[int]


def generate(model: Any, tokenizer: Any, prompts: list[str], cfg: GenerateConfig,
             show_progress: bool = True) -> list[Generation]:
    """Generate ``cfg.n`` samples per prompt; returns one :class:`Generation` per prompt, in order."""
    if hasattr(model, "generate_texts"):
        return model.generate_texts(tokenizer, prompts, cfg)
    import torch

    from slmkit.data.format import encode_prompt
    from slmkit.progress import progress

    encoded = [encode_prompt(tokenizer, p, cfg.prompt_format) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[Generation | None] = [None] * len(prompts)
    model.eval()
    with torch.inference_mode(), progress(transient=True) as bar:
        task = bar.add_task("generating", total=len(prompts), info="", visible=show_progress)
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start:start + cfg.batch_size]
            texts, counts = _generate_batch(model, tokenizer, [encoded[i] for i in idx], cfg,
                                            seed=cfg.seed + start)
            for j, i in enumerate(idx):
                sl = slice(j * cfg.n, (j + 1) * cfg.n)
                results[i] = Generation(prompts[i], texts[sl], counts[sl])
            bar.advance(task, len(idx))
    return results  # type: ignore[return-value]


def _generate_batch(model: Any, tokenizer: Any, batch: list[list[int]], cfg: GenerateConfig,
                    seed: int) -> tuple[list[str], list[int]]:
    import torch

    from slmkit.models.load import is_encoder_decoder

    encdec = is_encoder_decoder(model)
    input_ids, attention = pad_batch(batch, tokenizer.pad_token_id, left=not encdec)
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    sampling = cfg.temperature > 0
    kwargs = dict(max_new_tokens=cfg.max_new_tokens, do_sample=sampling, num_return_sequences=cfg.n,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if sampling:
        kwargs.update(temperature=cfg.temperature, top_p=cfg.top_p, top_k=0)
    if cfg.stop:
        kwargs.update(stop_strings=list(cfg.stop), tokenizer=tokenizer)
    out = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs)
    new = out[:, 1:] if encdec else out[:, input_ids.shape[1]:]
    return decode_new_tokens(tokenizer, new.tolist(), cfg.stop)


def decode_new_tokens(tokenizer: Any, rows: list[list[int]], stop: list[str]) -> tuple[list[str], list[int]]:
    """Texts (cut at EOS and stop strings) and generated-token counts (EOS included) of new-token rows."""
    texts, counts = [], []
    for row in rows:
        row = until_eos(row, tokenizer.eos_token_id)
        counts.append(len(row))
        texts.append(cut_at_stop(tokenizer.decode(row, skip_special_tokens=True), stop))
    return texts, counts


def pad_batch(batch: list[list[int]], pad_id: int, left: bool) -> tuple[Any, Any]:
    """Pad token lists to one tensor (left for decoder-only generation) with its attention mask."""
    import torch

    width = max(len(ids) for ids in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        cols = slice(width - len(row), width) if left else slice(0, len(row))
        ids[i, cols] = torch.tensor(row, dtype=torch.long)
        mask[i, cols] = 1
    return ids, mask


def until_eos(row: list[int], eos_id: int) -> list[int]:
    """Generated tokens up to and including the first EOS (generate pads only after a sequence ends)."""
    return row[:row.index(eos_id) + 1] if eos_id in row else row


def cut_at_stop(text: str, stop: list[str]) -> str:
    """Text before the earliest stop string."""
    cut = len(text)
    for s in stop:
        pos = text.find(s)
        if pos != -1:
            cut = min(cut, pos)
    return text[:cut]
