"""Shared numerics: forward passes aligned to targets, token log-probabilities and the losses built on them.

``forward_logits`` hides the one difference between architecture kinds that matters to a loss: a
decoder-only model predicts token t+1 at position t (logits shift by one), an encoder–decoder predicts
``labels[t]`` at decoder position t. Everything else (cross-entropy, sequence log-probs for preference
losses, KD terms) is written once over aligned ``(logits, labels)``. Losses here return *sums* over target
tokens; the training loop divides by the token count of the whole optimizer step so that gradient
accumulation is exact.
"""

from __future__ import annotations

from typing import Any

from slmkit.train.batching import IGNORE


def forward_logits(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """``(logits, labels)`` with ``logits[:, t]`` predicting ``labels[:, t]``, for either architecture kind."""
    if "decoder_input_ids" in batch:
        extra = {"pixel_values": batch["pixel_values"]} if "pixel_values" in batch else {}  # vision input
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=batch["decoder_attention_mask"], use_cache=False, **extra)
        return out.logits, batch["labels"]
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return out.logits[:, :-1], batch["labels"][:, 1:]


def token_logprobs(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Log-probability of each label token and the mask of real (non-ignored) targets."""
    import torch

    mask = labels != IGNORE
    safe = labels.masked_fill(~mask, 0)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_logprobs(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Sum of completion-token log-probs per example and the number of completion tokens."""
    logits, labels = forward_logits(model, batch)
    logp, mask = token_logprobs(logits, labels)
    return logp.sum(-1), mask.sum(-1)


def cross_entropy_sum(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    """Summed negative log-likelihood of the target tokens (divide by the step's token count)."""
    import torch

    logits, labels = forward_logits(model, batch)
    loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             labels.reshape(-1), ignore_index=IGNORE, reduction="sum")
    return loss, {}
