"""Load and save models and tokenizers: a local folder or a hub id, in the ``save_pretrained`` layout.

Loading picks the causal-LM or seq2seq Auto class from the config, so callers never need to know the
architecture. Saving writes safetensors into a temporary folder and renames it into place, so an
interrupted save never leaves a half-written model where a good one was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_dir
from slmkit.errors import ModelError


def is_encoder_decoder(model_or_config: Any) -> bool:
    """True for encoder–decoder (seq2seq) models or configs."""
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


def _quiet_transformers() -> None:
    """slmkit shows its own progress; transformers' per-file bars would interleave with it."""
    from transformers.utils import logging

    logging.disable_progress_bar()


def load_model(path_or_id: str, *, dtype: Any = None, device: str | None = None) -> Any:
    """Load a causal-LM or seq2seq model from a folder or a hub id (safetensors only)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from slmkit.models.registry import register_models

    _quiet_transformers()
    _check_local(path_or_id, "config.json")
    register_models()  # architectures with their own classes (encdec) must be known to AutoConfig
    try:
        config = AutoConfig.from_pretrained(path_or_id)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a model config from '{path_or_id}': {err}") from err
    auto = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
    kwargs = {"dtype": dtype} if dtype is not None else {}
    try:
        model = auto.from_pretrained(path_or_id, use_safetensors=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load model weights from '{path_or_id}': {err}") from err
    if device:
        model.to(device)
    return model


def load_tokenizer(path_or_id: str) -> Any:
    """Load any HF tokenizer; make sure it has a pad token (falling back to eos, as is customary)."""
    from transformers import AutoTokenizer

    _check_local(path_or_id, "tokenizer_config.json")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load a tokenizer from '{path_or_id}': {err}") from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def save_model(model: Any, tokenizer: Any, path: str | Path) -> Path:
    """Save model (+ tokenizer) as safetensors in the standard layout, atomically."""
    path = Path(path)
    _quiet_transformers()
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return path


def _check_local(path_or_id: str, marker: str) -> None:
    """A path that looks local but lacks the expected file fails here, not as a confusing hub lookup."""
    path = Path(path_or_id)
    looks_local = path.exists() or path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1
    if looks_local and not (path / marker).exists():
        raise ModelError(f"'{path_or_id}' is not a model folder: {marker} is missing")
