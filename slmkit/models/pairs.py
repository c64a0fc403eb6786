"""Parameter-matched decoder-only / encoder–decoder pairs, as in the comparisons of arXiv 2501.16273.

``matched_pair(budget, vocab_size)`` returns ``(decoder_overrides, encdec_overrides)``: shape keyword
arguments for ``build("decoder", ..., overrides=...)`` and ``build("encdec", ..., overrides=...)`` whose
total parameters are within ``tolerance`` (2%) of each other, with the same vocabulary and the same width
family (hidden size, attention heads, KV heads, head size). The decoder-only model takes the width of the
family whose depth for the budget is closest to the family's nominal depth; the encoder–decoder keeps that
width, splits its layers about 2/3 : 1/3 and adjusts depth and MLP width (multiples of 16) until its count
meets the decoder-only count. Both models tie one embedding table, so the vocabulary costs both the same.

Counts are closed-form (checked against instantiated models in ``tests/test_encdec.py``), so a search over
hundreds of candidates is instant and allocates nothing.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import ModelError

# Width family: (hidden, heads, kv heads, decoder-only MLP width, nominal depth), from the decoder presets
# plus two intermediate widths; head size is hidden // heads.
WIDTHS: list[tuple[int, int, int, int, int]] = [
    (64, 4, 2, 192, 2), (256, 8, 4, 704, 4), (512, 8, 4, 1408, 6), (640, 10, 5, 1728, 10),
    (768, 12, 4, 2048, 12), (1024, 16, 8, 3072, 24), (1536, 24, 8, 4096, 24),
]
MLP_STEP = 16


def _attention(h: int, heads: int, kv: int) -> int:
    hd = h // heads
    return 2 * h * heads * hd + 2 * h * kv * hd  # q, o and k, v projections (no biases)


def decoder_params(vocab: int, h: int, layers: int, heads: int, kv: int, mlp: int) -> int:
    """Unique parameters of the tied Llama-style decoder (``slmkit.models.decoder``)."""
    layer = _attention(h, heads, kv) + 3 * h * mlp + 2 * h
    return vocab * h + layers * layer + h


def encdec_params(vocab: int, h: int, enc: int, dec: int, heads: int, kv: int, mlp: int) -> int:
    """Unique parameters of ``encdec`` (T5Gemma layers with pre/post norms, one tied table)."""
    attn = _attention(h, heads, kv)
    enc_layer = attn + 3 * h * mlp + 4 * h
    dec_layer = 2 * attn + 3 * h * mlp + 6 * h  # + cross-attention and its two norms
    return vocab * h + enc * enc_layer + dec * dec_layer + 2 * h


def decoder_shape(budget: int, vocab: int, hidden_size: int | None = None) -> dict[str, Any]:
    """Decoder-only overrides closest to ``budget`` parameters in the width family."""
    best: tuple[float, dict] | None = None
    for h, heads, kv, mlp, nominal in WIDTHS:
        if hidden_size is not None and h != hidden_size:
            continue
        per_layer = decoder_params(vocab, h, 1, heads, kv, mlp) - decoder_params(vocab, h, 0, heads, kv, mlp)
        layers = max(3, round((budget - decoder_params(vocab, h, 0, heads, kv, mlp)) / per_layer))
        count = decoder_params(vocab, h, layers, heads, kv, mlp)
        if abs(count - budget) > 0.1 * budget:
            continue  # this width cannot reach the budget with whole layers
        score = abs(layers / nominal - 1.0)  # keep the family's depth/width proportions
        if best is None or score < best[0]:
            best = (score, dict(hidden_size=h, num_hidden_layers=layers, num_attention_heads=heads,
                                num_key_value_heads=kv, intermediate_size=mlp))
    if best is None:
        raise ModelError(f"no width in the family reaches {budget:,} parameters at vocabulary {vocab:,}"
                         + (f" with hidden_size {hidden_size}" if hidden_size else ""))
    return best[1]


def match_encdec(decoder: dict[str, Any], vocab: int, encoder_share: float = 2 / 3,
                 tolerance: float = 0.02) -> dict[str, Any]:
    """Encoder–decoder overrides with the decoder's width and (nearly) its parameter count."""
    from slmkit.models.encdec import split_layers

    h, heads, kv = decoder["hidden_size"], decoder["num_attention_heads"], decoder["num_key_value_heads"]
    target = decoder_params(vocab, h, decoder["num_hidden_layers"], heads, kv, decoder["intermediate_size"])
    mlp0 = decoder["intermediate_size"]
    best: tuple[tuple, dict] | None = None
    for total in range(2, 2 * decoder["num_hidden_layers"] + 3):
        enc, dec = split_layers(total, encoder_share)
        for mlp in range(max(MLP_STEP, mlp0 // 4 // MLP_STEP * MLP_STEP), 2 * mlp0 + 1, MLP_STEP):
            error = abs(encdec_params(vocab, h, enc, dec, heads, kv, mlp) / target - 1.0)
            # within tolerance, prefer the paper's depth split, then an MLP width near the decoder-only one
            key = (error > tolerance, abs(enc / total - encoder_share) > 0.05, round(abs(mlp / mlp0 - 1.0), 1),
                   error)
            if best is None or key < best[0]:
                best = (key, dict(hidden_size=h, num_attention_heads=heads, num_key_value_heads=kv,
                                  intermediate_size=mlp, encoder_layers=enc, decoder_layers=dec))
    assert best is not None
    return best[1]


def matched_pair(budget_params: int, vocab_size: int, *, hidden_size: int | None = None,
                 encoder_share: float = 2 / 3, tolerance: float = 0.02) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(decoder_overrides, encdec_overrides)`` with equal parameters (±``tolerance``) near ``budget_params``."""
    decoder = decoder_shape(int(budget_params), vocab_size, hidden_size)
    encdec = match_encdec(decoder, vocab_size, encoder_share, tolerance)
    a, b = pair_params(decoder, encdec, vocab_size)
    if abs(b / a - 1.0) > tolerance:
        raise ModelError(f"could not match {a:,} decoder-only parameters within {tolerance:.0%} "
                         f"(best encoder–decoder: {b:,})")
    return decoder, encdec


def pair_params(decoder: dict[str, Any], encdec: dict[str, Any], vocab: int) -> tuple[int, int]:
    """Closed-form parameter counts of a pair of override dicts."""
    return (decoder_params(vocab, decoder["hidden_size"], decoder["num_hidden_layers"],
                           decoder["num_attention_heads"], decoder["num_key_value_heads"],
                           decoder["intermediate_size"]),
            encdec_params(vocab, encdec["hidden_size"], encdec["encoder_layers"], encdec["decoder_layers"],
                          encdec["num_attention_heads"], encdec["num_key_value_heads"], encdec["intermediate_size"]))
