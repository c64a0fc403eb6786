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
