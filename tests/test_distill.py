"""Distillation: teacher→student target alignment (any prompt lengths, padding side and model kinds),
cross-tokenizer offsets, fail-fast checks, offline top-k cache, target sources and the stage end to end."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from slmkit.errors import ConfigError
from slmkit.models.build import build
from slmkit.models.load import save_model
from slmkit.train import distill
from slmkit.train.batching import decoder_start
from slmkit.train.kd_data import (DistillCollate, Sides, collate_teacher, completion_starts, encode_example, offset_map,
                                  student_side, teacher_logits, teacher_side)
from slmkit.train.losses import forward_logits

WORDS = "so then a big red box of ten more old new".split()


def varied_rows(rows, seed, n=6):
    """Rows whose prompts get a random-length preamble, so prompt lengths differ a lot within a batch."""
    rng = random.Random(seed)
    return [{**r, "prompt": " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 25))) + " " + r["prompt"]}
            for r in rows[:n]]


def sides_for(tok, student, teacher, padding="right", teacher_tok=None, max_length=512, teacher_max=1024):
    return Sides(student_tok=tok, teacher_tok=teacher_tok or tok, student_format="plain", teacher_format="plain",
                 student_max_length=max_length, teacher_max_length=teacher_max,
                 student_start=decoder_start(student), teacher_start=decoder_start(teacher),
                 teacher_padding_side=padding, by_offsets=teacher_tok is not None)


def one_model_logits(model, prompt, completion, start):
    """Target-token logits [len(completion), V] of one unpadded example (the reference)."""
    with torch.no_grad():
        if start is None:
            ids = torch.tensor([prompt + completion])
            return model(input_ids=ids).logits[0, len(prompt) - 1:len(prompt) - 1 + len(completion)]
        dec = torch.tensor([[start] + completion[:-1]])
        return model(input_ids=torch.tensor([prompt]), decoder_input_ids=dec).logits[0]


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("teacher_arch,student_arch", [("decoder", "encdec"), ("decoder", "t5"), ("decoder", "decoder"),
                                                        ("encdec", "t5"), ("t5", "decoder")])
def test_alignment_matches_unpadded_forward(teacher_arch, student_arch, padding, tokenizer, math_rows):
    teacher = build(teacher_arch, "pico", tokenizer=tokenizer, seed=1).eval()
    student = build(student_arch, "pico", tokenizer=tokenizer, seed=2).eval()
    sides = sides_for(tokenizer, student, teacher, padding)
    examples = [encode_example(i, r["prompt"], r["completion"], sides)
                for i, r in enumerate(varied_rows(math_rows, seed=len(padding) + len(teacher_arch)))]
    assert len({len(e["prompt_ids"]) for e in examples}) > 3
    batch = DistillCollate(sides, student)(examples)
    t_side, t_valid = teacher_side(teacher_logits(teacher, batch), batch["teacher_target_pos"])
    with torch.no_grad():
        s_side, s_valid = student_side(*forward_logits(student, batch))
    for b, e in enumerate(examples):
        n = len(e["completion_ids"])
        assert t_valid[b].sum() == n and s_valid[b].sum() == n
        want_t = one_model_logits(teacher, e["teacher_prompt_ids"], e["teacher_completion_ids"], sides.teacher_start)
        want_s = one_model_logits(student, e["prompt_ids"], e["completion_ids"], sides.student_start)
        assert torch.allclose(t_side[b, :n], want_t, atol=1e-4)
        assert torch.allclose(s_side[b, :n], want_s, atol=1e-4)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_alignment_is_exact_on_one_hot_predictions(padding, tokenizer, math_rows):
    """A fake teacher whose logits are one-hot on the true next token: aligned, they must spell the target."""
    teacher = build("decoder", "pico", tokenizer=tokenizer)
    student = build("t5", "pico", tokenizer=tokenizer)
    sides = sides_for(tokenizer, student, teacher, padding, max_length=40, teacher_max=60)  # truncation too
    examples = [encode_example(i, r["prompt"], r["completion"], sides)
                for i, r in enumerate(varied_rows(math_rows, seed=7, n=8))]
    batch = DistillCollate(sides, student)(examples)
    ids = batch["teacher_input_ids"]
    fake = torch.nn.functional.one_hot(torch.roll(ids, -1, dims=1), len(tokenizer)).float()
    target, valid = teacher_side(fake, batch["teacher_target_pos"])
    labels = batch["labels"]
    for b in range(len(examples)):
        want = labels[b][labels[b] != -100]
        ok = valid[b, :len(want)]
        assert torch.equal(target[b, :len(want)].argmax(-1)[ok], want[ok])
        cut = len(examples[b]["completion_ids"]) >= 60  # the teacher's prompt was cut away entirely
        assert ok.sum() == len(want) - cut


def test_cross_tokenizer_offsets_pair_tokens_starting_at_the_same_character(tokenizer, math_rows):
    from slmkit.models.tokenizer import train_tokenizer

    other = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in math_rows], vocab_size=420)
    text = math_rows[3]["completion"]
    s_ids, s_starts = completion_starts(tokenizer, text)
    t_ids, t_starts = completion_starts(other, text)
    assert s_ids[:-1] == tokenizer(text, add_special_tokens=False)["input_ids"]
    mapping = offset_map(s_starts, t_starts)
    matched = [(j, k) for j, k in enumerate(mapping) if k >= 0]
    assert len(matched) > 0.5 * len(s_ids)
    for j, k in matched:
        assert s_starts[j] == t_starts[k]
    assert mapping[-1] == len(t_ids) - 1  # EOS ↔ EOS


def make_teacher(tmp_path: Path, tokenizer, arch="decoder", name="teacher", seed=1) -> str:
    path = tmp_path / name
    save_model(build(arch, "pico", tokenizer=tokenizer, seed=seed), tokenizer, path)
    return str(path)


def write_rows(tmp_path: Path, rows, name="train.jsonl") -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def config(tmp_path, tokenizer, rows, **kw) -> distill.Config:
    tok = tmp_path / "tok"
    if not tok.exists():
        tokenizer.save_pretrained(tok)
    base = dict(train_file=write_rows(tmp_path, rows), teacher=make_teacher(tmp_path, tokenizer),
                tokenizer=str(tok), arch="t5", preset="pico", steps=3, batch_size=4, log_every=1,
                warmup_steps=1, lr=3e-3, max_length=128)
    return distill.Config(**{**base, **kw})


def broken_teacher(tmp_path, tokenizer, tok) -> str:
    """A teacher folder whose config and tokenizer are fine but whose weights cannot be read."""
    path = Path(make_teacher(tmp_path, tok, name="broken"))
    for f in path.glob("*.safetensors"):
        f.write_bytes(b"not safetensors")
    return str(path)


def test_unsupported_combinations_fail_before_weights_are_loaded(tmp_path, tokenizer, math_rows):
    from slmkit.models.tokenizer import train_tokenizer

    other = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in math_rows], vocab_size=420)
    teacher = broken_teacher(tmp_path, tokenizer, other)
    cfg = config(tmp_path, tokenizer, math_rows[:8], teacher=teacher)
    with pytest.raises(ConfigError, match="loss: uld"):
        distill.run(cfg, tmp_path / "run")
    same = broken_teacher(tmp_path / "same", tokenizer, tokenizer)
    for kw, match in ((dict(teacher_mode="offline", on_policy_fraction=0.5), "on_policy_fraction: 0"),
                      (dict(teacher_mode="offline", loss="uld"), "teacher_mode: online"),
                      (dict(alpha=1.5), "alpha")):
        with pytest.raises(ConfigError, match=match):
            distill.run(config(tmp_path, tokenizer, math_rows[:8], teacher=same, **kw), tmp_path / "run")
    bert = tmp_path / "bert"
    from transformers import ViTConfig
    ViTConfig().save_pretrained(bert)
    with pytest.raises(ConfigError, match="language-model head"):
        distill.run(config(tmp_path, tokenizer, math_rows[:8], teacher=str(bert), teacher_tokenizer=str(tmp_path / "tok")),
                    tmp_path / "run")


def test_distill_learns_the_teacher_and_saves_a_model(tmp_path, tokenizer, math_rows):
    from slmkit.artifacts import read_metrics
    from slmkit.models.load import load_model

    cfg = config(tmp_path, tokenizer, math_rows[:64], arch="encdec", alpha=1.0, steps=25, batch_size=8, lr=1e-2,
                 val_file=write_rows(tmp_path, math_rows[64:72], "val.jsonl"))
    result = distill.run(cfg, tmp_path / "run")
    kd = [r["kd"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "kd" in r]
    assert kd[-1] < 0.7 * kd[0]
    assert result.metrics["shared_tokenizer"] and result.metrics["student_encdec"]
    assert "eval_loss" in result.metrics
    assert load_model(str(tmp_path / "run" / "model")).config.is_encoder_decoder


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mode", ["online", "offline"])
def test_gradient_accumulation_is_exact_with_kd(mode, tmp_path, tokenizer, math_rows, monkeypatch):
    from slmkit.models import load

    saved = []
    monkeypatch.setattr(load, "save_model", lambda m, t, p: saved.append(state(m)))
    for accum in (1, 4):
        cfg = config(tmp_path, tokenizer, math_rows[:32], steps=2, batch_size=8, grad_accum=accum,
                     teacher_mode=mode, alpha=0.7, loss="jsd", temperature=2.0)
        distill.run(cfg, tmp_path / f"run{accum}")
    # Float rounding in the summed micro-batch gradients, amplified by Adam on near-zero elements, moves weights
    # by up to ~3e-5 here; weighting each micro-batch by its own token count (the classic bug) moves them ~1e-2.
    assert max((saved[0][k] - saved[1][k]).abs().max().item() for k in saved[0]) < 5e-4
    init = build("t5", "pico", tokenizer=tokenizer, seed=0).state_dict()
    assert max((saved[0][k] - init[k]).abs().max().item() for k in init) > 1e-3  # it trained


def test_offline_cache_matches_online_and_is_reused(tmp_path, tokenizer, math_rows, monkeypatch):
    from slmkit.train import kd_offline

    rows = math_rows[:12]
    cfg = config(tmp_path, tokenizer, rows, teacher_mode="offline", top_k=len(tokenizer), loss="jsd", beta=0.3,
                 temperature=1.5, alpha=1.0)
    pre = distill.preflight(cfg, rows)
    teacher = distill.load_teacher(cfg, "cpu")
    student = build("t5", "pico", tokenizer=tokenizer, seed=3)
    sides = distill.make_sides(cfg, pre, student, teacher)
    examples = [encode_example(i, r["prompt"], r["completion"], sides) for i, r in enumerate(rows)]
    online = DistillCollate(sides, student)
    offline = DistillCollate(sides, student)
    offline.reader, _ = distill.offline_reader(cfg, pre, teacher, examples, offline, tmp_path / "run")
    loss_on = distill.make_loss(cfg, teacher, pre.vocab)(student, online(examples[3:9]))[0]
    loss_off = distill.make_loss(cfg, None, pre.vocab)(student, offline(examples[3:9]))[0]
    assert loss_off.item() == pytest.approx(loss_on.item(), rel=1e-5)
    monkeypatch.setattr(kd_offline, "build_cache", lambda *a, **k: pytest.fail("cache rebuilt"))
    distill.offline_reader(cfg, pre, teacher, examples, offline, tmp_path / "run")
    small = DistillCollate(sides, student)
    cfg_k = distill.Config(**{**cfg.__dict__, "top_k": 8})
    monkeypatch.undo()
    small.reader, _ = distill.offline_reader(cfg_k, pre, teacher, examples, small, tmp_path / "run")
    assert small.reader.k == 8  # a different k is a different cache
    loss_k = distill.make_loss(cfg_k, None, pre.vocab)(student, small(examples[3:9]))[0]
    assert loss_k.item() <= loss_on.item() + 1e-5


def test_teacher_targets_are_generated_once(tmp_path, tokenizer, math_rows, monkeypatch):
    from slmkit.models import generate as gen

    rows = math_rows[:6]
    cfg = config(tmp_path, tokenizer, rows, targets="teacher", teacher_max_new_tokens=12)
    teacher = distill.load_teacher(cfg, "cpu")
    first = distill.teacher_targets(cfg, teacher, tokenizer, rows, tmp_path)
    want = gen.generate(teacher, tokenizer, [r["prompt"] for r in rows], gen.GenerateConfig(max_new_tokens=12))
    assert [r["completion"] for r in first] == [g.texts[0] for g in want]
    monkeypatch.setattr(gen, "generate", lambda *a, **k: pytest.fail("regenerated"))
    assert distill.teacher_targets(cfg, teacher, tokenizer, rows, tmp_path) == first


def test_on_policy_batches_use_student_samples(tokenizer, math_rows):
    teacher = build("decoder", "pico", tokenizer=tokenizer, seed=1)
    student = build("t5", "pico", tokenizer=tokenizer, seed=2)
    sides = sides_for(tokenizer, student, teacher)
    examples = [encode_example(i, r["prompt"], r["completion"], sides) for i, r in enumerate(math_rows[:4])]
    collate = DistillCollate(sides, student, on_policy=1.0, sample_tokens=8, seed=0)
    student.train()
    batch = collate(examples)
    assert batch["on_policy"].item() == 1.0 and student.training
    assert not torch.equal(batch["labels"][:, :3], DistillCollate(sides, student)(examples)["labels"][:, :3])
    assert torch.equal(collate(examples)["labels"], batch["labels"])  # same examples, same coin and samples
    student.eval()
    assert collate(examples)["on_policy"].item() == 0.0  # evaluation never samples


def test_uld_across_tokenizers_end_to_end(tmp_path, tokenizer, math_rows):
    from slmkit.models.tokenizer import train_tokenizer

    other = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in math_rows], vocab_size=420)
    teacher = make_teacher(tmp_path, other, name="teacher420")
    cfg = config(tmp_path, tokenizer, math_rows[:16], teacher=teacher, loss="uld", alpha=0.5, steps=2)
    result = distill.run(cfg, tmp_path / "run")
    assert not result.metrics["shared_tokenizer"]
    from slmkit.artifacts import read_metrics
    coverage = [r["kd_coverage"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "kd_coverage" in r]
    assert min(coverage) > 0.5
