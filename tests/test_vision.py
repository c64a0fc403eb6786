"""Vision input: an encdec with a patch encoder learns to caption PIL-drawn shapes far above chance, and the
whole model saves and loads."""

from __future__ import annotations

import random

import pytest
import torch

from slmkit.errors import ModelError
from slmkit.models.vision import (PatchEncoder, VisionConfig, VisionEncDec, collate_images, load_vision_model,
                                  save_vision_model, to_pixels)

SHAPES, COLOURS = ("circle", "square", "triangle"), {"red": (220, 30, 30), "green": (30, 180, 30),
                                                     "blue": (40, 60, 230)}
PROMPT = "What is in the picture?\n"


def draw(shape: str, colour: str, rng: random.Random, size: int = 32):
    """A shape of one colour, at a random place and size, on a random grey background."""
    from PIL import Image, ImageDraw

    grey = rng.randrange(90, 170)
    image = Image.new("RGB", (size, size), (grey, grey, grey))
    pen = ImageDraw.Draw(image)
    r = rng.randrange(size // 3, size // 3 + 3)
    x, y = size // 2 + rng.randrange(-3, 4), size // 2 + rng.randrange(-3, 4)
    box = (x - r, y - r, x + r, y + r)
    fill = COLOURS[colour]
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    return image


def examples(n: int, seed: int, tokenizer, image_size: int) -> list[dict]:
    from slmkit.data.format import encode_pair

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(list(COLOURS))
        caption = f"{colour} {shape}"
        rows.append({**encode_pair(tokenizer, PROMPT.rstrip("\n"), caption, "plain"), "caption": caption,
                     "pixels": to_pixels([draw(shape, colour, rng, image_size)], image_size)[0]})
    return rows


def test_caption_task_learnt_end_to_end(tokenizer, tmp_path):
    from functools import partial

    from slmkit.models.build import build
    from slmkit.train.batching import decoder_start, target_tokens
    from slmkit.train.loop import Job, TrainArgs, train
    from slmkit.train.losses import cross_entropy_sum

    cfg = VisionConfig(image_size=32, patch_size=8, width=64, layers=1, heads=4)
    model = VisionEncDec(build("encdec", "pico", tokenizer=tokenizer, seed=0), cfg)
    train_rows, test_rows = examples(1200, 0, tokenizer, 32), examples(90, 1, tokenizer, 32)
    job = Job(examples=train_rows, eval_examples=None, loss_fn=cross_entropy_sum, count_fn=target_tokens,
              collate=partial(collate_images, pad_id=tokenizer.pad_token_id, max_length=64,
                              decoder_start_id=decoder_start(model)))
    args = TrainArgs(steps=400, batch_size=32, lr=5e-3, warmup_steps=10, max_length=64, log_every=1000, seed=0)
    model, _ = train(model, job, args, tmp_path / "run", fingerprint="vision")
    accuracy = caption_accuracy(model.eval(), tokenizer, test_rows)
    assert accuracy > 0.4, accuracy  # chance is 1/9 for the colour-shape pair; colour alone gives 1/3

    save_vision_model(model, tokenizer, tmp_path / "m")
    loaded = load_vision_model(tmp_path / "m").eval()
    batch = collate_images(test_rows[:4], tokenizer.pad_token_id, 64, decoder_start(model))
    with torch.no_grad():
        a = model(batch["pixel_values"], batch["input_ids"], batch["attention_mask"],
                  decoder_input_ids=batch["decoder_input_ids"]).logits
        b = loaded(batch["pixel_values"], batch["input_ids"], batch["attention_mask"],
                   decoder_input_ids=batch["decoder_input_ids"]).logits
    assert torch.equal(a, b)


def caption_accuracy(model: VisionEncDec, tokenizer, rows: list[dict]) -> float:
    from slmkit.models.generate import pad_batch

    ids, mask = pad_batch([r["prompt_ids"] for r in rows], tokenizer.pad_token_id, left=False)
    pixels = torch.stack([r["pixels"] for r in rows])
    out = model.generate(pixels, ids, mask, max_new_tokens=16, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    texts = tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)
    return sum(t.strip() == r["caption"] for t, r in zip(texts, rows)) / len(rows)


def test_vision_needs_an_encoder_decoder(decoder_model, tmp_path):
    with pytest.raises(ModelError, match="needs an encoder–decoder"):
        VisionEncDec(decoder_model)
    with pytest.raises(ModelError, match="vision_config.json is missing"):
        load_vision_model(tmp_path)
    with pytest.raises(ModelError, match="not a multiple"):
        PatchEncoder(VisionConfig(image_size=30, patch_size=8))
