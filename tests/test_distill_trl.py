"""Dev-only: slmkit's KD losses equal TRL's GKD loss on the same batch (decoder → decoder, one tokenizer).

TRL (1.16) ``GKDTrainer.generalized_jsd_loss``: β = 0 is KL(teacher ‖ student) (forward KL), β = 1 is
KL(student ‖ teacher), in between the generalised JSD of GKD; it averages over the tokens whose label is
not -100 and does not multiply by τ². ``GKDTrainer.compute_loss`` runs both models on the same
right-padded prompt + completion and shifts logits by one; with λ = 0 (no student samples) that is the
whole GKD loss. slmkit's ``distill`` loss with α = 1 (no gold CE) must give the same number.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
pytest.importorskip("trl")


def batch_and_models(tokenizer, math_rows, cfg):
    from slmkit.models.build import build
    from slmkit.train import distill
    from slmkit.train.kd_data import DistillCollate, Sides, encode_example

    student = build("decoder", "pico", tokenizer=tokenizer, seed=0)
    teacher = build("decoder", "pico", tokenizer=tokenizer, seed=1).eval()
    sides = Sides(tokenizer, tokenizer, "plain", "plain", 256, 256, None, None)
    examples = [encode_example(i, r["prompt"], r["completion"], sides) for i, r in enumerate(math_rows[:6])]
    batch = DistillCollate(sides, student)(examples)
    return student, teacher, batch, distill.make_loss(cfg, teacher, len(tokenizer))


def test_forward_kl_equals_trl_gkd_loss(tokenizer, math_rows):
    from trl.experimental.gkd import GKDTrainer

    from slmkit.train import distill
    from slmkit.train.batching import target_tokens

    cfg = distill.Config(loss="forward_kl", alpha=1.0, temperature=1.0, on_policy_fraction=0.0)
    student, teacher, batch, loss_fn = batch_and_models(tokenizer, math_rows, cfg)
    ours = loss_fn(student, batch)[0] / target_tokens(batch)
    trainer = SimpleNamespace(teacher_model=teacher, beta=0.0, generalized_jsd_loss=GKDTrainer.generalized_jsd_loss)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    theirs = GKDTrainer.compute_loss(trainer, student, inputs)
    print(f"slmkit {ours.item():.8f}  trl {theirs.item():.8f}  diff {abs(ours.item() - theirs.item()):.2e}")
    assert abs(ours.item() - theirs.item()) < 1e-5
    assert ours.item() > 0.01  # two different models: a real comparison


@pytest.mark.parametrize("kind,beta", [("jsd", 0.5), ("jsd", 0.2), ("reverse_kl", 1.0)])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_jsd_and_reverse_kl_equal_trl_generalized_jsd(kind, beta, temperature, tokenizer, math_rows):
    from trl.experimental.gkd import GKDTrainer

    from slmkit.train import distill
    from slmkit.train.kd_data import student_side, teacher_logits, teacher_side
    from slmkit.train.losses import forward_logits, kd_sum_full

    cfg = distill.Config(loss=kind, beta=beta, alpha=1.0, temperature=temperature)
    student, teacher, batch, _ = batch_and_models(tokenizer, math_rows, cfg)
    with torch.no_grad():
        logits, labels = forward_logits(student, batch)
        s, valid = student_side(logits, labels)
        t, _ = teacher_side(teacher_logits(teacher, batch), batch["teacher_target_pos"])
        ours = kd_sum_full(s, t, valid, kind=kind, beta=beta, temperature=temperature) / temperature ** 2
        t_full = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        theirs = GKDTrainer.generalized_jsd_loss(logits, t_full, labels=labels, beta=beta,
                                                 temperature=temperature, reduction="sum")
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
