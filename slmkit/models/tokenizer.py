"""Tokenizers: train a byte-level BPE on a corpus, or take any HF tokenizer; also the ``tokenizer`` stage.

The trained tokenizer splits digits one by one before BPE (as Llama and Qwen do) so that arithmetic is
learnable by small models, adds ``<s>`` in front of every encoded text, and ships a minimal chat template.
It is saved as an HF ``PreTrainedTokenizerFast`` (``tokenizer.json`` + config) so any transformers code
can load it. Reads: a jsonl of canonical rows. Writes: ``<stage>/tokenizer/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result, atomic_dir
from slmkit.config import field

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True, kw_only=True)
class Config:
    train_file: str | None = field(None, doc="jsonl of rows whose prompt+completion texts train the BPE", input=True)
    base: str | None = field(None, doc="use this HF tokenizer (folder or hub id) instead of training one")
    vocab_size: int = field(1024, doc="BPE vocabulary size, special tokens included")
    min_frequency: int = field(2, doc="minimum pair frequency for a BPE merge")


OUTPUTS = {"tokenizer": "tokenizer"}


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 2) -> Any:
    """A byte-level BPE trained on ``texts`` with digits split, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, BOS, EOS, UNK, *CHAT_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK,
        additional_special_tokens=CHAT_TOKENS, chat_template=CHAT_TEMPLATE, model_max_length=2048)


def save_tokenizer(tokenizer: Any, path: str | Path) -> None:
    """Save in the HF layout, atomically."""
    with atomic_dir(path) as tmp:
        tokenizer.save_pretrained(tmp)


def run(cfg: Config, run_dir: Path) -> Result:
    """Train (or copy) a tokenizer and save it under ``run_dir/tokenizer``."""
    from slmkit.data.loaders import read_rows
    from slmkit.errors import ConfigError
    from slmkit.models.load import load_tokenizer

    if cfg.base:
        tokenizer = load_tokenizer(cfg.base)
    elif cfg.train_file:
        rows = read_rows(cfg.train_file)
        texts = [r["prompt"] + "\n" + r.get("completion", "") for r in rows]
        tokenizer = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    else:
        raise ConfigError("tokenizer: set train_file (to train a BPE) or base (to use an existing tokenizer)")
    from slmkit.artifacts import is_main_process

    if is_main_process():
        save_tokenizer(tokenizer, run_dir / OUTPUTS["tokenizer"])
    return Result(metrics={"vocab_size": len(tokenizer)})
