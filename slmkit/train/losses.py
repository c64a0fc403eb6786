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


# --- Preference losses -------------------------------------------------------------------------------------
# Batches for pair losses hold 2B rows, the B chosen completions first and then the B rejected ones, plus
# ``ref_logps`` (2B) from the reference model. KTO batches hold B rows with ``kto_label`` (1 desirable,
# 0 undesirable), ``ref_logps`` (B), and the B mismatched (prompt, other completion) rows that estimate the
# KL reference point under ``kl_*`` keys with ``ref_kl_logps``. The ``*_loss_sum`` functions return SUMS
# over pairs (KTO: examples); the loop divides by the pairs of the whole optimizer step.


def dpo_losses(chosen_logratios: Any, rejected_logratios: Any, beta: float, label_smoothing: float = 0.0,
               dpop_lambda: float = 0.0) -> Any:
    """Per-pair DPO loss (Rafailov et al. 2023, Eq. 7), with cDPO label smoothing ε (the preference is
    assumed flipped with probability ε): ``-(1-ε) log σ(βΔ) - ε log σ(-βΔ)``, Δ = chosen − rejected log-ratio.

    ``dpop_lambda`` λ > 0 is DPO-Positive (Pal et al. 2024, arXiv 2402.13228, Eq. 3): Δ loses
    λ·max(0, −chosen log-ratio), a penalty on the chosen answer becoming less likely than under the
    reference — the failure of plain DPO on pairs a few tokens apart, such as math answers a digit apart."""
    import torch.nn.functional as F

    if dpop_lambda:
        chosen_logratios = chosen_logratios - dpop_lambda * (-chosen_logratios).clamp(min=0)
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
                  label_smoothing: float = 0.0, sft_weight: float = 0.0,
                  dpop_lambda: float = 0.0) -> tuple[Any, dict[str, float]]:
    """Summed DPO (``method="dpo"``) or IPO (``"ipo"``) loss of a pair batch (chosen rows, then rejected).

    ``sft_weight`` α adds α · NLL(chosen)/|chosen| per pair, the RPO objective of Pang et al. 2024 (arXiv
    2404.19733), which keeps the chosen answers likely while the margin grows (pure DPO can lower both).
    """
    logps, n_tokens = sequence_logprobs(model, batch)
    ratios = logps - batch["ref_logps"].to(logps.dtype)
    chosen, rejected = ratios.chunk(2)
    chosen_n, rejected_n = n_tokens.chunk(2)
    if method == "dpo":
        losses = dpo_losses(chosen, rejected, beta, label_smoothing, dpop_lambda)
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

# ---------------------------------------------------------------------------------------------------------
# Knowledge distillation (KD) terms. Every function takes *aligned* student logits [B, T, V] (position t of
# the teacher tensor holds the teacher's distribution for the same target token), a boolean mask [B, T] of
# positions to score, and returns the SUM over masked positions, so the loop's exact accumulation holds.
#
# Conventions (documented because toolkits disagree):
# * ``forward_kl`` = KL(teacher || student) (mode-covering; Hinton et al. 2015), ``reverse_kl`` =
#   KL(student || teacher) (mode-seeking; MiniLLM, Gu et al. 2024), ``jsd`` = the generalised JSD of GKD
#   (Agarwal et al. 2024, Eq. 1) with β: β·KL(T || M) + (1-β)·KL(S || M), M = β·T + (1-β)·S. This is TRL's
#   convention, in which β = 0 is forward KL and β = 1 reverse KL (``kd_divergence`` maps those to them).
# * Temperature τ divides both logit sets, and the term is multiplied by τ² (Hinton et al. 2015) so that its
#   gradient magnitude does not shrink as τ grows and one α works across temperatures. TRL does not apply
#   τ²; at τ = 1 (the default) the two agree exactly.
# * A log-probability of exactly zero mass is floored at ``LOG_FLOOR`` (exp underflows to 0 in float32 and
#   float64, so 0·log 0 terms are 0 with finite gradients instead of NaN).
# ---------------------------------------------------------------------------------------------------------

LOG_FLOOR = -1.0e4
KD_LOSSES = ("forward_kl", "reverse_kl", "jsd", "uld")


def kd_divergence(student_logp: Any, teacher_logp: Any, kind: str, beta: float = 0.5) -> Any:
    """Per-position divergence between two distributions over the same bins (log-probs, last axis)."""
    import math

    import torch

    s, t = student_logp.clamp(min=LOG_FLOOR), teacher_logp.clamp(min=LOG_FLOOR)
    if kind == "jsd" and beta <= 0.0:
        kind = "forward_kl"
    if kind == "jsd" and beta >= 1.0:
        kind = "reverse_kl"
    if kind == "forward_kl":
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse_kl":
        return (s.exp() * (s - t)).sum(-1)
    if kind == "jsd":
        m = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))
        return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)
    raise ValueError(f"unknown KD divergence '{kind}' (known: forward_kl, reverse_kl, jsd)")


def kd_sum_full(student_logits: Any, teacher_logits: Any, mask: Any, *, kind: str = "forward_kl",
                beta: float = 0.5, temperature: float = 1.0) -> Any:
    """τ²·Σ over masked positions of the divergence over the common vocabulary (one shared tokenizer).

    Both vocabularies are clipped to ``min(V_student, V_teacher)``: ids beyond a model's tokenizer are
    padding rows of its embedding matrix, never real tokens, so they are dropped before the softmax.
    """
    import torch

    vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])
    s = torch.log_softmax(student_logits[..., :vocab].float() / temperature, dim=-1)
    t = torch.log_softmax(teacher_logits[..., :vocab].float() / temperature, dim=-1)
    return temperature ** 2 * (kd_divergence(s, t, kind, beta) * mask).sum()


def topk_bins(student_logp: Any, indices: Any, teacher_values: Any, teacher_tail: Any) -> tuple[Any, Any]:
    """Student and teacher as distributions over k+1 bins: the teacher's top-k tokens plus one "rest" bin.

    The teacher's remaining mass ``teacher_tail`` (stored exactly, in log space) and the student's mass
    outside the same k tokens become the last bin. KD over these bins is the exact divergence between the
    two distributions coarse-grained to {top-k, rest}: never more than the full-vocabulary divergence (data
    processing inequality) and equal to it when the teacher's rest mass is zero. Renormalising the top-k
    instead would silently inflate the teacher's confidence.
    """
    import torch

    indices = indices.long()
    picked = student_logp.gather(-1, indices)
    # the student's rest mass summed directly (not 1 − Σ top-k, which cancels badly when top-k ≈ all mass)
    student_rest = student_logp.scatter(-1, indices, float("-inf")).logsumexp(-1)
    return (torch.cat([picked, student_rest.unsqueeze(-1)], dim=-1),
            torch.cat([teacher_values.float(), teacher_tail.float().unsqueeze(-1)], dim=-1))


def kd_sum_topk(student_logits: Any, values: Any, indices: Any, tail: Any, mask: Any, *,
                kind: str = "forward_kl", beta: float = 0.5, temperature: float = 1.0,
                vocab: int | None = None) -> Any:
    """τ²·Σ of the divergence against a stored top-k teacher (offline mode; see :func:`topk_bins`).

    ``values``/``tail`` are the teacher's log-probs at temperature τ already; ``vocab`` clips the student to
    the common vocabulary the teacher's top-k was taken over.
    """
    import torch

    vocab = vocab or student_logits.shape[-1]
    s = torch.log_softmax(student_logits[..., :vocab].float() / temperature, dim=-1)
    s_bins, t_bins = topk_bins(s, indices, values, tail)
    return temperature ** 2 * (kd_divergence(s_bins, t_bins, kind, beta) * mask).sum()


def uld_sum(student_logits: Any, teacher_logits: Any, mask: Any, *, temperature: float = 1.0) -> Any:
    """τ²·Σ of the Universal Logit Distillation distance (Boizard et al. 2024, arXiv 2402.12030, Eq. 5).

    Works across tokenizers: each side's probabilities are sorted in decreasing order, the smaller
    vocabulary is padded with zeros, and the distance is the L1 between the sorted vectors (the closed form
    of their Wasserstein-1 bound with unit transport cost). Token identity is not used, so the vocabularies
    may differ; positions must already be aligned (see ``slmkit.train.kd_data``).
    """
    import torch

    s = torch.softmax(student_logits.float() / temperature, dim=-1).sort(dim=-1, descending=True).values
    t = torch.softmax(teacher_logits.float() / temperature, dim=-1).sort(dim=-1, descending=True).values
    width = max(s.shape[-1], t.shape[-1])
    s = torch.nn.functional.pad(s, (0, width - s.shape[-1]))
    t = torch.nn.functional.pad(t, (0, width - t.shape[-1]))
    return temperature ** 2 * ((s - t).abs().sum(-1) * mask).sum()
