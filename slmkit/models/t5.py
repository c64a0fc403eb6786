"""Stock T5 (v1.1-style gated-GELU) encoder–decoder configs, usable until the ``encdec`` architecture lands.

These are plain transformers ``T5Config`` presets so that every stage can be exercised with an
encoder–decoder model; the paper-faithful encoder–decoder (RoPE, GQA, 2/3 encoder depth) is ``encdec``.
"""

from __future__ import annotations

from typing import Any

KIND = "encdec"
DEFAULT_VOCAB = 32000  # presets without their own vocab_size use this

PRESETS: dict[str, dict[str, Any]] = {
    "pico": dict(vocab_size=512, d_model=64, d_kv=16, d_ff=192, num_layers=2, num_decoder_layers=1, num_heads=4),
    "tiny": dict(vocab_size=4096, d_model=256, d_kv=32, d_ff=704, num_layers=4, num_decoder_layers=2, num_heads=8),
    "small": dict(d_model=512, d_kv=64, d_ff=1408, num_layers=8, num_decoder_layers=4, num_heads=8),
}


def make_config(preset: dict[str, Any], vocab_size: int, special_ids: dict[str, int | None],
                overrides: dict[str, Any]) -> Any:
    """A T5Config; the decoder starts from the pad token as in T5."""
    from transformers import T5Config

    kwargs = dict(vocab_size=vocab_size, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                  tie_word_embeddings=True, pad_token_id=special_ids.get("pad_token_id"),
                  eos_token_id=special_ids.get("eos_token_id"),
                  decoder_start_token_id=special_ids.get("pad_token_id"))
    kwargs.update(preset)
    kwargs.update(overrides)
    return T5Config(**kwargs)


def config_class() -> type:
    from transformers import T5Config

    return T5Config
