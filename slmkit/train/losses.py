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
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    decoder_input_ids=batch["decoder_input_ids"],
                    decoder_attention_mask=batch["decoder_attention_mask"], use_cache=False)
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


# --- Preference losses -------------------------------------------------------------------------------------
# Batches for pair losses hold 2B rows, the B chosen completions first and then the B rejected ones, plus
# ``ref_logps`` (2B) from the reference model. KTO batches hold B rows with ``kto_label`` (1 desirable,
# 0 undesirable), ``ref_logps`` (B), and the B mismatched (prompt, other completion) rows that estimate the
# KL reference point under ``kl_*`` keys with ``ref_kl_logps``. The ``*_loss_sum`` functions return SUMS
# over pairs (KTO: examples); the loop divides by the pairs of the whole optimizer step.


def dpo_losses(chosen_logratios: Any, rejected_logratios: Any, beta: float, label_smoothing: float = 0.0) -> Any:
    """Per-pair DPO loss (Rafailov et al. 2023, Eq. 7), with cDPO label smoothing ε (the preference is
    assumed flipped with probability ε): ``-(1-ε) log σ(βΔ) - ε log σ(-βΔ)``, Δ = chosen − rejected log-ratio."""
    import torch.nn.functional as F

    delta = beta * (chosen_logratios - rejected_logratios)
    return -(1.0 - label_smoothing) * F.logsigmoid(delta) - label_smoothing * F.logsigmoid(-delta)


def ipo_losses(chosen_logratios: Any, rejected_logratios: Any, chosen_tokens: Any, rejected_tokens: Any,
               beta: float) -> Any:
    """Per-pair IPO loss (Azar et al. 2023, Eq. 17): ``(Δ - 1/(2β))²`` with per-token log-ratios, the length
    normalisation the IPO authors use (and TRL follows)."""
    delta = chosen_logratios / chosen_tokens.clamp(min=1) - rejected_logratios / rejected_tokens.clamp(min=1)
    return (delta - 1.0 / (2.0 * beta)) ** 2


def kto_losses(logratios: Any, desirable: Any, kl: Any, beta: float, desirable_weight: float = 1.0,
               undesirable_weight: float = 1.0) -> Any:
    """Per-example KTO loss (Ethayarajh et al. 2024, Eq. 7): ``λ_D (1 - σ(β(r - z0)))`` for desirable and
    ``λ_U (1 - σ(β(z0 - r)))`` for undesirable completions, r = log-ratio, z0 = the KL reference point."""
    import torch

    good = desirable.bool()
    value = torch.where(good, 1.0 - torch.sigmoid(beta * (logratios - kl)),
                        1.0 - torch.sigmoid(beta * (kl - logratios)))
    return value * torch.where(good, desirable_weight, undesirable_weight)


def kto_kl_point(policy_logps: Any, ref_logps: Any) -> Any:
    """z0: the batch mean of log π/π_ref on mismatched (prompt, completion) pairs, clamped at 0 and without
    gradient, as in KTO §4.1 and TRL."""
    return (policy_logps - ref_logps).mean().detach().clamp(min=0)


def _reward_metrics(beta: float, chosen: Any, rejected: Any) -> dict[str, float]:
    margins = beta * (chosen - rejected).detach()
    return {"reward_chosen": float(beta * chosen.detach().mean()), "reward_rejected": float(beta * rejected.detach().mean()),
            "reward_margin": float(margins.mean()), "reward_accuracy": float((margins > 0).float().mean())}


def pair_loss_sum(model: Any, batch: dict[str, Any], *, method: str = "dpo", beta: float = 0.1,
                  label_smoothing: float = 0.0, sft_weight: float = 0.0) -> tuple[Any, dict[str, float]]:
    """Summed DPO (``method="dpo"``) or IPO (``"ipo"``) loss of a pair batch (chosen rows, then rejected).

    ``sft_weight`` α adds α · NLL(chosen)/|chosen| per pair, the RPO objective of Pang et al. 2024 (arXiv
    2404.19733), which keeps the chosen answers likely while the margin grows (pure DPO can lower both).
    """
    logps, n_tokens = sequence_logprobs(model, batch)
    ratios = logps - batch["ref_logps"].to(logps.dtype)
    chosen, rejected = ratios.chunk(2)
    chosen_n, rejected_n = n_tokens.chunk(2)
    if method == "dpo":
        losses = dpo_losses(chosen, rejected, beta, label_smoothing)
    elif method == "ipo":
        losses = ipo_losses(chosen, rejected, chosen_n, rejected_n, beta)
    else:
        raise ValueError(f"unknown pair loss '{method}' (dpo or ipo)")
    metrics = _reward_metrics(beta, chosen, rejected)
    if sft_weight:
        nll = -logps.chunk(2)[0] / chosen_n.clamp(min=1)
        losses = losses + sft_weight * nll
        metrics["chosen_nll"] = float(nll.detach().mean())
    return losses.sum(), metrics


def kto_loss_sum(model: Any, batch: dict[str, Any], *, beta: float = 0.1, desirable_weight: float = 1.0,
                 undesirable_weight: float = 1.0) -> tuple[Any, dict[str, float]]:
    """Summed KTO loss of a batch of labelled completions (see the batch layout above)."""
    import torch

    kl_batch = {key[3:]: value for key, value in batch.items() if key.startswith("kl_")}
    with torch.no_grad():
        kl_logps, _ = sequence_logprobs(model, kl_batch)
    kl = kto_kl_point(kl_logps, batch["ref_kl_logps"].to(kl_logps.dtype))
    logps, _ = sequence_logprobs(model, batch)
    ratios = logps - batch["ref_logps"].to(logps.dtype)
    desirable = batch["kto_label"].bool()
    losses = kto_losses(ratios, desirable, kl, beta, desirable_weight, undesirable_weight)
    metrics = {"kl": float(kl)}
    if desirable.any():
        metrics["reward_chosen"] = float(beta * ratios[desirable].detach().mean())
    if (~desirable).any():
        metrics["reward_rejected"] = float(beta * ratios[~desirable].detach().mean())
    return losses.sum(), metrics
