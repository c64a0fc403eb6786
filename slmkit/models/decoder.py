"""Decoder-only Llama-style architecture (RoPE, GQA, RMSNorm, SwiGLU) through transformers' LlamaConfig.

Presets span pico (< 1M parameters, for tests) to medium (~350M). Embeddings are tied, as in most
sub-1B models (SmolLM, Qwen2.5-0.5B), because untied embeddings would be a large share of the budget.
"""

from __future__ import annotations

from typing import Any

KIND = "decoder"
DEFAULT_VOCAB = 32000  # presets without their own vocab_size use this

PRESETS: dict[str, dict[str, Any]] = {
    "pico": dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=192),
    "tiny": dict(vocab_size=4096, hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=4,
                 intermediate_size=704),
    "small": dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, num_key_value_heads=4,
                  intermediate_size=1408),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4,
                 intermediate_size=2048),
    "medium": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, num_key_value_heads=8,
                   intermediate_size=3072),
}


def make_config(preset: dict[str, Any], vocab_size: int, special_ids: dict[str, int | None],
                overrides: dict[str, Any]) -> Any:
    """A LlamaConfig from preset keyword arguments, a vocabulary and overrides (validated by the caller)."""
    from transformers import LlamaConfig

    kwargs = dict(vocab_size=vocab_size, max_position_embeddings=2048, tie_word_embeddings=True,
                  rms_norm_eps=1e-5, **special_ids)
    kwargs.update(preset)
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def config_class() -> type:
    from transformers import LlamaConfig

    return LlamaConfig
