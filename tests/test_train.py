"""The shared loop: exact gradient accumulation, exact resume, and SFT that learns, for both kinds."""

from __future__ import annotations

import pytest
import torch

from slmkit.models.build import build
from slmkit.train.loop import TrainArgs, train
from slmkit.train.sft import sft_job


class Interrupt(Exception):
    pass


def args(**kw) -> TrainArgs:
    base = dict(steps=4, batch_size=8, lr=3e-3, warmup_steps=1, max_length=128, log_every=1, seed=0)
    return TrainArgs(**{**base, **kw})


def run(arch, tokenizer, rows, run_dir, on_step=None, **kw):
    model = build(arch, "pico", tokenizer=tokenizer, seed=0)
    cfg = args(**kw)
    job = sft_job(model, tokenizer, rows, None, type("C", (), {"prompt_format": "plain", "max_length": 128})())
    model, summary = train(model, job, cfg, run_dir, fingerprint="fp", on_step=on_step)
    return model, summary


def max_diff(a, b) -> float:
    return max((p - q).abs().max().item() for p, q in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_gradient_accumulation_is_exact(arch, tokenizer, math_rows, tmp_path):
    one, _ = run(arch, tokenizer, math_rows[:64], tmp_path / "a", grad_accum=1)
    four, _ = run(arch, tokenizer, math_rows[:64], tmp_path / "b", grad_accum=4)
    untrained = build(arch, "pico", tokenizer=tokenizer, seed=0)
    assert max_diff(one, untrained) > 1e-3  # it trained
    assert max_diff(one, four) < 2e-5


@pytest.mark.parametrize("arch", ["decoder", "t5"])
def test_resume_after_kill_matches_straight_run(arch, tokenizer, math_rows, tmp_path):
    straight, _ = run(arch, tokenizer, math_rows[:64], tmp_path / "straight", steps=6, checkpoint_every=3)

    def kill(step):
        if step == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run(arch, tokenizer, math_rows[:64], tmp_path / "resumed", steps=6, checkpoint_every=3, on_step=kill)
    assert (tmp_path / "resumed" / "checkpoint" / "state.json").exists()
    resumed, _ = run(arch, tokenizer, math_rows[:64], tmp_path / "resumed", steps=6, checkpoint_every=3)
    assert max_diff(straight, resumed) < 1e-6


def test_checkpoint_of_another_run_is_ignored(tokenizer, math_rows, tmp_path):
    from slmkit.train.checkpoint import load_checkpoint
    from slmkit.train.loop import _optimizer, _scheduler

    run("decoder", tokenizer, math_rows[:32], tmp_path, steps=2, checkpoint_every=2)
    model = build("decoder", "pico", tokenizer=tokenizer)
    opt = _optimizer(model, args())
    sched = _scheduler(opt, args())
    assert load_checkpoint(tmp_path / "checkpoint", model=model, optimizer=opt, scheduler=sched,
                           fingerprint="other") is None
    assert load_checkpoint(tmp_path / "checkpoint", model=model, optimizer=opt, scheduler=sched,
                           fingerprint="fp")["step"] == 2


@pytest.mark.parametrize("arch", ["decoder", "t5", "encdec"])
def test_sft_loss_falls(arch, tokenizer, math_rows, tmp_path):
    from slmkit.artifacts import read_metrics

    run(arch, tokenizer, math_rows, tmp_path, steps=30, batch_size=16, lr=5e-3)
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert losses[-1] < 0.6 * losses[0]


def test_batch_size_must_divide(tokenizer, math_rows, tmp_path):
    from slmkit.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible"):
        run("decoder", tokenizer, math_rows[:16], tmp_path, batch_size=6, grad_accum=4)


def test_prompt_tokens_are_masked(tokenizer, decoder_model, t5_model):
    from functools import partial

    from slmkit.data.format import encode_pair
    from slmkit.train.batching import IGNORE, collate, decoder_start

    ex = [encode_pair(tokenizer, "Tom has 3 apples.", "3 + 1 = 4.\n#### 4", "plain")]
    dec = collate(ex, pad_id=tokenizer.pad_token_id, max_length=64)
    n_prompt = len(ex[0]["prompt_ids"])
    assert (dec["labels"][0, :n_prompt] == IGNORE).all()
    assert dec["labels"][0, n_prompt:].tolist() == ex[0]["completion_ids"]
    enc = collate(ex, pad_id=tokenizer.pad_token_id, max_length=64, decoder_start_id=decoder_start(t5_model))
    assert enc["labels"][0].tolist() == ex[0]["completion_ids"]
    assert enc["decoder_input_ids"][0, 0].item() == t5_model.config.decoder_start_token_id
    assert enc["decoder_input_ids"][0, 1:].tolist() == ex[0]["completion_ids"][:-1]
