"""The ``encdec`` architecture of "Return of the Encoder" (arXiv 2501.16273): an encoder–decoder SLM.

About 2/3 of the layers encode the input once (bidirectional self-attention), 1/3 decode (causal
self-attention with a KV cache, then cross-attention whose K/V are computed once per input and cached).
GQA, RMSNorm, gated SiLU MLP, RoPE in self-attention only, no position encoding in cross-attention, one
embedding table shared by encoder, decoder and LM head, no dropout, no logit soft-capping. The model is
transformers' T5Gemma with the encoder table tied as well (see ``modeling_encdec``), so it saves, loads,
generates and converts to CTranslate2 like any transformers model.

Positions. The paper's code centres the encoder's RoPE positions (``p - (L-1)//2``). In a bidirectional
encoder every query attends to every key with the rotation of ``m - n`` only (RoPE's relative property:
``<R_m q, R_n k> = <q, R_{n-m} k>``), so shifting all positions by one constant leaves every attention score,
and hence the output, unchanged; the encoder therefore keeps T5Gemma's ``0..L-1`` and
``tests/test_encdec.py`` checks that passing centred ``position_ids`` gives the same outputs.

Presets share hidden size, heads and MLP width with the ``decoder`` presets of the same name and pick the
encoder/decoder depths and MLP width (``slmkit.models.pairs``) so that both have equal parameters (±2%).
"""

from __future__ import annotations

from typing import Any

KIND = "encdec"
DEFAULT_VOCAB = 32000  # presets without their own vocab_size use this
ENCODER_SHARE = 2 / 3  # fraction of the layers in the encoder (paper, Sec. 3)
ROPE_THETA = 10000.0

# Shape keys a preset or ``model_overrides`` may set (the transformers config nests them per encoder/decoder).
OVERRIDE_KEYS = ("hidden_size", "intermediate_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                 "encoder_layers", "decoder_layers", "max_position_embeddings", "rms_norm_eps", "hidden_activation")

PRESETS: dict[str, dict[str, Any]] = {  # each matches the decoder preset of the same name (slmkit.models.pairs)
    "pico": dict(vocab_size=512, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=80, encoder_layers=2, decoder_layers=1),
    "tiny": dict(vocab_size=4096, hidden_size=256, num_attention_heads=8, num_key_value_heads=4,
                 intermediate_size=944, encoder_layers=2, decoder_layers=1),
    "small": dict(hidden_size=512, num_attention_heads=8, num_key_value_heads=4, intermediate_size=1232,
                  encoder_layers=4, decoder_layers=2),
    "base": dict(hidden_size=768, num_attention_heads=12, num_key_value_heads=4, intermediate_size=2048,
                 encoder_layers=7, decoder_layers=4),
    "medium": dict(hidden_size=1024, num_attention_heads=16, num_key_value_heads=8, intermediate_size=3120,
                   encoder_layers=15, decoder_layers=7),
}
_DEFAULTS: dict[str, Any] = dict(max_position_embeddings=2048, rms_norm_eps=1e-6, hidden_activation="silu")


def split_layers(total: int, encoder_share: float = ENCODER_SHARE) -> tuple[int, int]:
    """(encoder, decoder) layers for ``total`` layers, at least one each."""
    if total < 2:
        raise ValueError("an encoder–decoder needs at least 2 layers")
    enc = min(total - 1, max(1, round(total * encoder_share)))
    return enc, total - enc


def _stack(shape: dict[str, Any], layers: int, vocab_size: int, special: dict[str, int | None]) -> dict[str, Any]:
    """Keyword arguments of one T5GemmaModuleConfig (encoder or decoder stack)."""
    head_dim = shape.get("head_dim") or shape["hidden_size"] // shape["num_attention_heads"]
    return dict(
        vocab_size=vocab_size, hidden_size=shape["hidden_size"], intermediate_size=shape["intermediate_size"],
        num_hidden_layers=layers, num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"], head_dim=head_dim,
        hidden_activation=shape["hidden_activation"], rms_norm_eps=shape["rms_norm_eps"],
        max_position_embeddings=shape["max_position_embeddings"],
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        # standard 1/sqrt(head_dim) attention, no soft-capping, full attention in every layer
        query_pre_attn_scalar=head_dim, attn_logit_softcapping=None, final_logit_softcapping=None,
        layer_types=["full_attention"] * layers, sliding_window=shape["max_position_embeddings"],
        tie_word_embeddings=True, **special)


def make_config(preset: dict[str, Any], vocab_size: int, special_ids: dict[str, int | None],
                overrides: dict[str, Any]) -> Any:
    """An ``EncDecConfig`` from flat shape keys (see ``OVERRIDE_KEYS``), a vocabulary and special ids."""
    from slmkit.errors import ModelError

    shape = {**_DEFAULTS, **preset, **overrides}
    if shape["num_attention_heads"] % shape["num_key_value_heads"]:
        raise ModelError("encdec: num_attention_heads must be a multiple of num_key_value_heads")
    if min(shape["encoder_layers"], shape["decoder_layers"]) < 1:
        raise ModelError("encdec: encoder_layers and decoder_layers must both be at least 1")
    start = special_ids.get("bos_token_id")
    if start is None:
        start = special_ids.get("pad_token_id")
    # T5Gemma starts decoding from the decoder's bos token (its _shift_right and CTranslate2 use it)
    special = {**special_ids, "bos_token_id": start}
    config_cls = config_class()
    return config_cls(encoder=_stack(shape, shape["encoder_layers"], vocab_size, special),
                      decoder=_stack(shape, shape["decoder_layers"], vocab_size, special),
                      vocab_size=vocab_size, tie_word_embeddings=True, dropout_rate=0.0, attention_dropout=0.0,
                      decoder_start_token_id=start, **special)


def config_class() -> type:
    register()
    from slmkit.models.modeling_encdec import EncDecConfig

    return EncDecConfig


def register() -> None:
    """Register the modelling classes with transformers' Auto classes (loading a saved encdec needs it)."""
    from slmkit.models import modeling_encdec

    modeling_encdec.register()
