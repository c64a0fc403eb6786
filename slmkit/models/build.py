"""Build a fresh model from an architecture name, a size preset and overrides.

``build("decoder", "tiny", tokenizer=tok)`` returns a randomly initialised transformers model whose
vocabulary and special-token ids match the tokenizer. ``param_count`` counts parameters on the meta
device, so ``slmkit list`` can print the size of a 350M preset without allocating it.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import ModelError
from slmkit.models.registry import get_arch, preset_kwargs


def make_config(arch: str, preset: str, *, tokenizer: Any = None, vocab_size: int | None = None,
                overrides: dict[str, Any] | None = None) -> Any:
    """The transformers config for ``arch``/``preset``; unknown override keys are an error."""
    module = get_arch(arch)
    kwargs = preset_kwargs(module, arch, preset)
    overrides = dict(overrides or {})
    known = set(getattr(module, "OVERRIDE_KEYS", ()) or module.config_class()().to_dict())
    for key in overrides:
        if key not in known:
            raise ModelError(f"model override '{key}' is not a field of {module.config_class().__name__}"
                             + (f" (use one of: {', '.join(module.OVERRIDE_KEYS)})" if hasattr(module, "OVERRIDE_KEYS")
                                else ""))
    preset_vocab = kwargs.pop("vocab_size", module.DEFAULT_VOCAB)  # a preset may carry its own default
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        special = {"pad_token_id": tokenizer.pad_token_id, "bos_token_id": tokenizer.bos_token_id,
                   "eos_token_id": tokenizer.eos_token_id}
    else:
        vocab_size = vocab_size or preset_vocab
        special = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
    return module.make_config(kwargs, vocab_size, special, overrides)


def build(arch: str, preset: str, *, tokenizer: Any = None, vocab_size: int | None = None,
          overrides: dict[str, Any] | None = None, seed: int = 0) -> Any:
    """A randomly initialised model (deterministic for a given seed)."""
    import torch

    config = make_config(arch, preset, tokenizer=tokenizer, vocab_size=vocab_size, overrides=overrides)
    torch.manual_seed(seed)
    return model_from_config(config)


def model_from_config(config: Any) -> Any:
    """Instantiate the right Auto class (causal LM or seq2seq) for a config."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM
    try:
        return auto.from_config(config)
    except ValueError as err:
        raise ModelError(f"cannot build a model from {type(config).__name__}: {err}") from err


def param_count(arch: str, preset: str, *, vocab_size: int | None = None,
                overrides: dict[str, Any] | None = None) -> int:
    """Number of unique parameters (tied weights counted once), computed without allocating memory."""
    import torch

    config = make_config(arch, preset, vocab_size=vocab_size, overrides=overrides)
    with torch.device("meta"):
        model = model_from_config(config)
    return count_parameters(model)


def count_parameters(model: Any) -> int:
    """Unique parameters of a module (shared tensors once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total
