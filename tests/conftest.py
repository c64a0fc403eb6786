"""Shared test fixtures: tiny tokenizers and models built from configs (no network, no hub)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("SLMKIT_QUIET", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


@pytest.fixture(scope="session")
def math_rows():
    from slmkit.data.tasks.math_word import generate

    return generate(600, seed=0, min_steps=1, max_steps=2, max_operand=20)


@pytest.fixture(scope="session")
def tokenizer(math_rows, tmp_path_factory):
    """A byte-level BPE trained on built-in math rows, saved and re-loaded like a user's would be."""
    from slmkit.models.load import load_tokenizer
    from slmkit.models.tokenizer import save_tokenizer, train_tokenizer

    tok = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in math_rows], vocab_size=300)
    path = tmp_path_factory.mktemp("tok") / "tokenizer"
    save_tokenizer(tok, path)
    return load_tokenizer(str(path))


@pytest.fixture
def decoder_model(tokenizer):
    from slmkit.models.build import build

    return build("decoder", "pico", tokenizer=tokenizer, seed=0)


@pytest.fixture
def t5_model(tokenizer):
    from slmkit.models.build import build

    return build("t5", "pico", tokenizer=tokenizer, seed=0)


@pytest.fixture
def encdec_model(tokenizer):
    from slmkit.models.build import build

    return build("encdec", "pico", tokenizer=tokenizer, seed=0)


@pytest.fixture(scope="session")
def trained_dirs(tokenizer, math_rows, tmp_path_factory):
    """Pico decoder and encdec briefly trained on math and saved: unlike random models, whose greedy output
    repeats one token, their outputs vary with the input, so parity checks between runtimes mean something."""
    from slmkit.models.build import build
    from slmkit.models.load import save_model
    from slmkit.train.loop import TrainArgs, train
    from slmkit.train.sft import sft_job

    root = tmp_path_factory.mktemp("trained")
    args = TrainArgs(steps=60, batch_size=16, lr=1e-2, warmup_steps=5, max_length=128, log_every=100, seed=0)
    cfg = type("C", (), {"prompt_format": "plain", "max_length": 128})()
    dirs = {}
    for arch in ("decoder", "encdec"):
        model = build(arch, "pico", tokenizer=tokenizer, seed=0)
        model, _ = train(model, sft_job(model, tokenizer, math_rows[:400], None, cfg), args, root / f"{arch}_run",
                         fingerprint="fp")
        dirs[arch] = save_model(model, tokenizer, root / arch)
    return dirs
