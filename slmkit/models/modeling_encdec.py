"""transformers classes of the ``encdec`` architecture: T5Gemma with one embedding table for everything.

Imported only by :func:`slmkit.models.encdec.register` (i.e. when a model is built or loaded), never by
``import slmkit``; it imports transformers at the top because it subclasses transformers classes, like a
transformers ``modeling_*.py`` file.

transformers' ``T5GemmaForConditionalGeneration`` already is the encoder–decoder of "Return of the Encoder"
(arXiv 2501.16273, Sec. 3): independent encoder/decoder depths, GQA, RMSNorm, gated MLP, RoPE in both
self-attentions and none in cross-attention, a decoder self-attention KV cache, and cross-attention K/V
computed once per input and cached. One thing is missing: T5Gemma ties the LM head to the *decoder*
embeddings only and gives the encoder its own table, while the paper (and every parameter-matched
comparison with a tied decoder-only model) shares one table between encoder input, decoder input and LM
head. That costs ``vocab x hidden`` parameters (16M at 32k x 512, half of a 35M model), so this subclass
adds the encoder table to the tied weights. It has its own ``model_type`` so that a saved checkpoint (which
stores the shared table once) is never loaded by plain T5Gemma with a randomly initialised encoder table;
``register()`` makes it known to ``AutoConfig`` / ``AutoModelForSeq2SeqLM`` so ``save_pretrained``,
``from_pretrained`` and ``generate`` work as for any transformers model.
"""

from __future__ import annotations

from transformers import AutoConfig, AutoModelForSeq2SeqLM, T5GemmaConfig, T5GemmaForConditionalGeneration

MODEL_TYPE = "slmkit_encdec"


class EncDecConfig(T5GemmaConfig):
    """A ``T5GemmaConfig`` under its own model type (see the module docstring)."""

    model_type = MODEL_TYPE


class EncDecForConditionalGeneration(T5GemmaForConditionalGeneration):
    """T5Gemma whose encoder, decoder and LM head share one embedding matrix."""

    config_class = EncDecConfig
    _tied_weights_keys = {
        **T5GemmaForConditionalGeneration._tied_weights_keys,  # LM head <- decoder embeddings
        "model.encoder.embed_tokens.weight": "model.decoder.embed_tokens.weight",
    }


def register() -> None:
    """Make the classes known to transformers' Auto classes (idempotent)."""
    AutoConfig.register(MODEL_TYPE, EncDecConfig, exist_ok=True)
    AutoModelForSeq2SeqLM.register(EncDecConfig, EncDecForConditionalGeneration, exist_ok=True)


register()
