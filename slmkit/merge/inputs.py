"""What a merge needs to know about an input model, read from its files without loading any weight.

``read_model`` finds the folder (a local path, or a hub id fetched into the HF cache), reads
``config.json``, the safetensors headers (names, shapes, dtypes — a few KB per shard, via ``safe_open``)
and the tokenizer's vocabulary (``tokenizer.json``, or the hash of a sentencepiece model). The
``check_*`` functions compare two models and raise errors naming both models and the field or tensor.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "spiece.model", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
                   "chat_template.json", "generation_config.json")
# Config fields that fix how weights are read: equal shapes with different values would merge into garbage.
STRUCTURE = ("model_type", "architectures", "vocab_size", "hidden_size", "num_hidden_layers",
             "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "hidden_act",
             "tie_word_embeddings", "is_encoder_decoder", "d_model", "d_kv", "d_ff", "num_layers",
             "num_decoder_layers", "num_heads", "feed_forward_proj", "n_embd", "n_layer", "n_head")


@dataclass(frozen=True)
class TensorMeta:
    """One stored tensor: shape, safetensors dtype code and the shard file that holds it."""

    shape: tuple[int, ...]
    dtype: str
    file: str


@dataclass(frozen=True)
class ModelFiles:
    """An input model as the merge sees it: where it is, its config, its tensors and its vocabulary."""

    ref: str
    folder: Path
    config: dict[str, Any]
    tensors: dict[str, TensorMeta]
    vocab: Any = field(default=None, compare=False)


def locate(ref: str) -> Path:
    """A local folder for ``ref``: the path itself, or a hub snapshot (weights, config, tokenizer)."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    if ref.startswith((".", "/", "~")) or ref.count("/") > 1:
        raise ModelError(f"model '{ref}' does not exist")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref, allow_patterns=["*.json", "*.safetensors", *TOKENIZER_FILES]))
    except Exception as err:  # the hub client raises many types (offline, 404, auth)
        raise ModelError(f"model '{ref}' is not a local folder and cannot be fetched from the hub: {err}") from err


def read_model(ref: str) -> ModelFiles:
    """Config, tensor headers and vocabulary of the model at ``ref`` (no weights are read)."""
    folder = locate(ref)
    config_path = folder / "config.json"
    if not config_path.exists():
        raise ModelError(f"model '{ref}': {config_path} is missing (not a transformers model folder)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ModelError(f"model '{ref}': {config_path} is not valid JSON ({err.msg})") from err
    return ModelFiles(ref, folder, config, read_headers(ref, folder), vocabulary(folder))


def shard_files(ref: str, folder: Path) -> list[str]:
    """The safetensors files of a model folder (from its index when sharded)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (folder / "model.safetensors").exists():
        return ["model.safetensors"]
    found = sorted(p.name for p in folder.glob("*.safetensors"))
    if not found:
        raise ModelError(f"model '{ref}' has no safetensors weights in {folder} (slmkit merges safetensors "
                         "only; re-save the model with save_pretrained(safe_serialization=True))")
    return found


def read_headers(ref: str, folder: Path) -> dict[str, TensorMeta]:
    """Name -> shape/dtype/file for every tensor, from the file headers."""
    from safetensors import safe_open

    tensors: dict[str, TensorMeta] = {}
    for file in shard_files(ref, folder):
        try:
            with safe_open(str(folder / file), framework="pt") as handle:
                for name in handle.keys():
                    view = handle.get_slice(name)
                    tensors[name] = TensorMeta(tuple(view.get_shape()), view.get_dtype(), file)
        except Exception as err:  # safetensors raises its own SafetensorError for corrupt headers
            raise ModelError(f"model '{ref}': cannot read the header of {folder / file}: {err}") from err
    return tensors


def vocabulary(folder: Path) -> Any:
    """id -> token of the model's tokenizer, the hash of a sentencepiece file, or None if it has none."""
    path = folder / "tokenizer.json"
    if path.exists():
        data = json.loads(path.read_text())
        vocab = data.get("model", {}).get("vocab") or {}
        # BPE/WordPiece store {token: id}; Unigram stores [[piece, score], ...] in id order.
        ids = {i: v[0] for i, v in enumerate(vocab)} if isinstance(vocab, list) else {i: t for t, i in vocab.items()}
        ids.update({t["id"]: t["content"] for t in data.get("added_tokens", [])})
        return ids
    for name in ("tokenizer.model", "spiece.model"):
        if (folder / name).exists():
            return "sha256:" + hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return None


def structure(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The shape-defining fields of a config, nested sub-configs (``encoder``, ``decoder``...) included."""
    found = {prefix + k: config.get(k) for k in STRUCTURE}
    for key, value in config.items():
        if isinstance(value, dict) and any(k in value for k in STRUCTURE):
            found.update(structure(value, f"{prefix}{key}."))
    return found


def check_same_structure(ref: ModelFiles, other: ModelFiles) -> None:
    """Architectures and shape-defining config fields must agree (mergekit #132: mixed architectures)."""
    mine, theirs = structure(ref.config), structure(other.config)
    for key in sorted(set(mine) | set(theirs), key=lambda k: (k.count("."), k)):
        a, b = mine.get(key), theirs.get(key)
        if a != b:
            what = "vocabulary size" if key == "vocab_size" else f"config field '{key}'"
            raise ModelError(f"model '{other.ref}' differs from '{ref.ref}' in {what}: {b!r} vs {a!r}; "
                             "only models of one architecture and size can be merged")


def check_same_tensors(ref: ModelFiles, other: ModelFiles) -> None:
    """Same tensor names and shapes; the message names the first offending tensors."""
    missing = sorted(set(ref.tensors) - set(other.tensors))
    extra = sorted(set(other.tensors) - set(ref.tensors))
    if missing or extra:
        parts = [f"lacks {_few(missing)}" if missing else "", f"has extra {_few(extra)}" if extra else ""]
        raise ModelError(f"model '{other.ref}' does not have the tensors of '{ref.ref}': "
                         + "; ".join(p for p in parts if p))
    for name, meta in ref.tensors.items():
        if other.tensors[name].shape != meta.shape:
            raise ModelError(f"tensor '{name}' has shape {list(other.tensors[name].shape)} in '{other.ref}' "
                             f"but {list(meta.shape)} in '{ref.ref}'")


def check_same_vocabulary(ref: ModelFiles, other: ModelFiles) -> None:
    """Token ids must mean the same tokens, or embedding rows would be averaged across different tokens."""
    if ref.vocab is None or other.vocab is None or ref.vocab == other.vocab:
        return
    if isinstance(ref.vocab, dict) and isinstance(other.vocab, dict):
        diff = sorted(i for i in set(ref.vocab) | set(other.vocab) if ref.vocab.get(i) != other.vocab.get(i))
        example = f" (e.g. id {diff[0]}: {other.vocab.get(diff[0])!r} vs {ref.vocab.get(diff[0])!r})"
        raise ModelError(f"the tokenizer of '{other.ref}' differs from that of '{ref.ref}' in {len(diff)} token "
                         f"ids{example}; merged embeddings would mix different tokens")
    raise ModelError(f"the tokenizer of '{other.ref}' differs from that of '{ref.ref}'")


def _few(names: list[str]) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
