"""CPU deployment through CTranslate2: export a transformers model folder, run it behind ``generate()``.

``export(model, out, quantization)`` converts with CTranslate2's own ``TransformersConverter`` (decoder-only
Llama-style models, stock T5, and ``encdec``) into ``out/`` (``model.bin``, vocabulary, ``config.json``)
and adds the tokenizer plus ``slmkit_export.json`` (kind, quantization, source), so the folder is
self-contained. ``CT2Model(out)`` loads it as a ``ctranslate2.Generator`` (decoder-only) or ``Translator``
(encoder–decoder) and implements ``generate_texts(tokenizer, prompts, cfg)``, so
``slmkit.models.generate.generate`` and everything built on it run on CTranslate2 unchanged.

``encdec`` converts with CTranslate2's T5Gemma loader (``T5GemmaLoader``), which maps T5Gemma's
pre/post-norm layers, GQA, RoPE self-attention and RoPE-free cross-attention onto CTranslate2's
Transformer spec. slmkit's subclass only (a) loads our registered class instead of plain T5Gemma, which
would drop the shared encoder table, and (b) takes the decoder-start token from the model config rather
than assuming ``tokenizer.bos_token``. That loader ignores T5Gemma's ``query_pre_attn_scalar`` and logit
soft-capping; ``encdec`` sets the first to ``head_dim`` (CTranslate2's scaling) and disables the second,
and ``tests/test_deploy.py`` checks that fp32 greedy outputs are token-identical to PyTorch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

from slmkit.errors import ModelError

META_FILE = "slmkit_export.json"
QUANTIZATIONS = ("int8", "int8_float32", "int16", "float32", "float16", "bfloat16", "int8_float16",
                 "int8_bfloat16")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")


def _loaders() -> dict[str, Any]:
    """CTranslate2's converter registry (config class name -> loader), with slmkit's encdec added."""
    from ctranslate2.converters import transformers as ct2t

    from slmkit.models.registry import register_models

    register_models()
    if "EncDecConfig" not in ct2t._MODEL_LOADERS:

        class EncDecLoader(ct2t.T5GemmaLoader):
            def get_model_class(self, config: Any, model_class: Any) -> Any:
                from slmkit.models.modeling_encdec import EncDecForConditionalGeneration

                return EncDecForConditionalGeneration

            def set_config(self, config: Any, model: Any, tokenizer: Any) -> None:
                super().set_config(config, model, tokenizer)
                config.decoder_start_token = tokenizer.convert_ids_to_tokens(model.config.decoder_start_token_id)

        ct2t.register_loader("EncDecConfig")(EncDecLoader)
    return ct2t._MODEL_LOADERS


def check_exportable(model: str, tokenizer: str | None = None) -> Any:
    """The model's transformers config, or a ``ModelError`` naming the missing file / unsupported type."""
    from transformers import AutoConfig

    loaders = _loaders()
    for folder, names, what in ((model, ("config.json",), "model config"), (model, WEIGHT_FILES, "weights"),
                                (tokenizer or model, ("tokenizer_config.json",), "tokenizer")):
        path = Path(folder)
        if path.exists() and not any((path / n).exists() for n in names):
            raise ModelError(f"cannot export '{folder}': {what} file {' or '.join(names)} is missing")
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot export '{model}': {err}") from err
    name = type(config).__name__
    if name not in loaders:
        raise ModelError(f"cannot export '{model}': CTranslate2 has no converter for {name} "
                         f"(it converts {', '.join(sorted(loaders))})")
    return config


def export(model: str, out: str | Path, quantization: str = "int8", tokenizer: str | None = None) -> Path:
    """Convert ``model`` (folder or hub id) into a self-contained CTranslate2 folder ``out`` (atomically)."""
    from ctranslate2.converters import TransformersConverter

    from slmkit.artifacts import atomic_dir, atomic_write_json
    from slmkit.models.load import is_encoder_decoder, load_tokenizer

    if quantization not in QUANTIZATIONS:
        raise ModelError(f"unknown quantization '{quantization}' (use one of {', '.join(QUANTIZATIONS)})")
    config = check_exportable(model, tokenizer)
    tok = load_tokenizer(tokenizer or model)
    with atomic_dir(Path(out)) as tmp:
        TransformersConverter(model).convert(str(tmp), quantization=quantization, force=True)
        tok.save_pretrained(tmp)
        atomic_write_json(Path(tmp) / META_FILE, {
            "format": "ctranslate2", "quantization": quantization, "source": str(model),
            "encoder_decoder": is_encoder_decoder(config), "model_type": config.model_type,
            "params": _param_count(config), "vocab_size": len(tok)})
    return Path(out)


def _param_count(config: Any) -> int:
    """Parameters of the source model, counted on the meta device (nothing allocated)."""
    import torch

    from slmkit.models.build import count_parameters, model_from_config

    with torch.device("meta"):
        return count_parameters(model_from_config(config))


class CT2Model:
    """A CTranslate2 export behind slmkit's ``generate()`` (``generate_texts``) and a token-level API."""

    def __init__(self, path: str | Path, *, device: str = "cpu", compute_type: str = "default", threads: int = 0):
        from slmkit.models.load import load_tokenizer

        path = Path(path)
        for name in (META_FILE, "model.bin"):
            if not (path / name).exists():
                raise ModelError(f"'{path}' is not a CTranslate2 export of slmkit: {name} is missing "
                                 "(create one with `slmkit export model=...`)")
        self.meta = json.loads((path / META_FILE).read_text())
        self.path = path
        self.encoder_decoder = bool(self.meta["encoder_decoder"])
        self._options = dict(device=device, compute_type=compute_type, intra_threads=threads or (os.cpu_count() or 1))
        self.runtime = self._load()
        self.tokenizer = load_tokenizer(str(path))

    def _load(self) -> Any:
        import ctranslate2

        runtime = ctranslate2.Translator if self.encoder_decoder else ctranslate2.Generator
        return runtime(str(self.path), **self._options)

    def reseed(self, seed: int) -> None:
        """Make sampling reproducible: CTranslate2 seeds each worker thread's generator once, when the thread
        first samples, so a new seed only takes effect in a freshly loaded runtime."""
        import ctranslate2

        ctranslate2.set_random_seed(seed)
        self.runtime = self._load()

    def generate_ids(self, batch: list[list[int]], max_new_tokens: int, *, min_new_tokens: int = 0,
                     temperature: float = 0.0, top_p: float = 1.0, batch_size: int = 0,
                     callback: Callable[[Any], Any] | None = None) -> list[list[int]]:
        """New token ids per input (ending with EOS when generation stopped there)."""
        tokens = [self.tokenizer.convert_ids_to_tokens(ids) for ids in batch]
        common = dict(max_batch_size=batch_size, beam_size=1, return_end_token=True, callback=callback,
                      sampling_topk=0 if temperature > 0 else 1, sampling_topp=top_p,
                      sampling_temperature=temperature if temperature > 0 else 1.0)
        if self.encoder_decoder:
            results = self.runtime.translate_batch(tokens, max_decoding_length=max_new_tokens,
                                                   min_decoding_length=min_new_tokens, max_input_length=0,
                                                   **common)
        else:
            results = self.runtime.generate_batch(tokens, max_length=max_new_tokens, min_length=min_new_tokens,
                                                  include_prompt_in_result=False, **common)
        return [self.tokenizer.convert_tokens_to_ids(r.hypotheses[0] if self.encoder_decoder else r.sequences[0])
                for r in results]

    def generate_texts(self, tokenizer: Any, prompts: list[str], cfg: Any) -> list[Any]:
        """``cfg.n`` samples per prompt as ``Generation`` objects, like ``slmkit.models.generate.generate``."""
        from slmkit.data.format import encode_prompt
        from slmkit.models.generate import Generation, decode_new_tokens

        if cfg.temperature > 0:
            self.reseed(cfg.seed)
        encoded = [encode_prompt(tokenizer, p, cfg.prompt_format) for p in prompts]
        rows = self.generate_ids([ids for ids in encoded for _ in range(cfg.n)], cfg.max_new_tokens,
                                 temperature=cfg.temperature, top_p=cfg.top_p, batch_size=cfg.batch_size)
        texts, counts = decode_new_tokens(tokenizer, rows, cfg.stop)
        return [Generation(p, texts[i * cfg.n:(i + 1) * cfg.n], counts[i * cfg.n:(i + 1) * cfg.n])
                for i, p in enumerate(prompts)]


class CT2Backend:
    """The ``ctranslate2`` backend kind: an exported folder as a teacher, judge or grader."""

    def __init__(self, model: str, tokenizer: str | None = None, threads: int = 0):
        from slmkit.models.load import load_tokenizer

        self.name = f"ctranslate2:{model}"
        self.model = CT2Model(model, threads=threads)
        self.tokenizer = load_tokenizer(tokenizer or model)

    def generate(self, prompts: list[str], cfg: Any) -> list[Any]:
        from slmkit.models.generate import generate

        return generate(self.model, self.tokenizer, prompts, cfg)


def disk_bytes(path: str | Path) -> int:
    """Size of the files in a model folder."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
