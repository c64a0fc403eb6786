"""Collation of encoded (prompt, completion) pairs into model batches, for both architecture kinds.

Decoder-only: ``input_ids = prompt + completion`` (right-padded), ``labels`` = -100 over the prompt and
padding, so only completion tokens are learnt. Encoder–decoder: the prompt goes to the encoder, the
completion is the decoder target, and ``decoder_input_ids`` is the target shifted right after the
model's decoder-start token. Over-long examples keep the end of the prompt and the start of the answer.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100


def truncate(prompt: list[int], completion: list[int], max_length: int, encdec: bool) -> tuple[list, list]:
    """Fit one example into ``max_length`` tokens (per side for encoder–decoder, in total otherwise)."""
    if encdec:
        return prompt[-max_length:], completion[:max_length]
    completion = completion[:max_length]
    room = max_length - len(completion)
    return (prompt[-room:] if room > 0 else []), completion


def collate(examples: list[dict[str, list[int]]], pad_id: int, max_length: int,
            decoder_start_id: int | None = None) -> dict[str, Any]:
    """Tensors for a batch; ``decoder_start_id`` set means an encoder–decoder model."""
    import torch

    encdec = decoder_start_id is not None
    pairs = [truncate(e["prompt_ids"], e["completion_ids"], max_length, encdec) for e in examples]
    if encdec:
        enc = [p for p, _ in pairs]
        dec_in = [[decoder_start_id] + c[:-1] for _, c in pairs]
        labels = [c for _, c in pairs]
        ids, mask = _pad(enc, pad_id)
        dec_ids, dec_mask = _pad(dec_in, pad_id)
        lab, _ = _pad(labels, IGNORE)
        return {"input_ids": ids, "attention_mask": mask, "decoder_input_ids": dec_ids,
                "decoder_attention_mask": dec_mask, "labels": lab}
    seqs = [p + c for p, c in pairs]
    labels = [[IGNORE] * len(p) + c for p, c in pairs]
    ids, mask = _pad(seqs, pad_id)
    lab, _ = _pad(labels, IGNORE)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def _pad(rows: list[list[int]], value: int) -> tuple[Any, Any]:
    import torch

    width = max(1, max(len(r) for r in rows))
    out = torch.full((len(rows), width), value, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        out[i, :len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, :len(r)] = 1
    return out, mask


def target_tokens(batch: dict[str, Any]) -> int:
    """Number of supervised (non-ignored) target tokens in a batch."""
    return int((batch["labels"] != IGNORE).sum())


def decoder_start(model: Any) -> int | None:
    """The decoder-start token id of an encoder–decoder model, ``None`` for decoder-only models."""
    config = model.config
    if not getattr(config, "is_encoder_decoder", False):
        return None
    start = getattr(config, "decoder_start_token_id", None)
    if start is None:
        start = getattr(getattr(config, "decoder", None), "bos_token_id", None) or config.pad_token_id
    return start
