"""Prompt guards: a small classifier in front of any SLM that decides whether a prompt should be answered.

After LiteLMGuard (arXiv 2505.05619): the guard is model-agnostic, so it sits in front of any backend,
full-precision or quantized. A guard is anything with ``threshold`` and ``score(texts) -> list[float]``
(the probability that each prompt should NOT be answered); a prompt is refused when its score is at or
above the threshold, which is calibrated on validation data for a target false-positive rate.

Kinds (``GUARDS``): ``encoder`` (a fine-tuned HF encoder in PyTorch), ``onnx`` (its ONNX Runtime
export, fp32 or int8) and ``ngram`` (character/word n-grams + logistic regression). Every kind is saved
as a folder holding ``guard.json`` (kind, threshold, windowing, calibration) plus its weights;
:func:`load_guard` opens any of them. Stages: ``guard_data`` (data.py), ``guard_train`` (train.py),
``guard_export`` (export.py), ``guard_eval`` (evaluate.py); guarded generation is in guarded.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from slmkit.errors import ModelError
from slmkit.registry import resolve

META_FILE = "guard.json"


class Guard(Protocol):
    """What every guard offers (a stable interface: the server and guarded generation rely on it)."""

    kind: str
    threshold: float

    def score(self, texts: list[str]) -> list[float]:
        """Probability that each prompt should not be answered, in input order."""


GUARDS: dict[str, str] = {
    "encoder": "slmkit.guard.encoder:EncoderGuard",
    "onnx": "slmkit.guard.export:OnnxGuard",
    "ngram": "slmkit.guard.ngram:NgramGuard",
}


def read_meta(path: str | Path) -> dict[str, Any]:
    """``guard.json`` of a guard folder; a missing or broken one is a ModelError naming the folder."""
    from slmkit.artifacts import read_json
    from slmkit.errors import ConfigError

    file = Path(path) / META_FILE
    if not file.is_file():
        raise ModelError(f"'{path}' is not a guard folder: {META_FILE} is missing")
    try:
        meta = read_json(file)
    except ConfigError as err:
        raise ModelError(str(err)) from None
    for key in ("kind", "threshold"):
        if key not in meta:
            raise ModelError(f"{file}: field '{key}' is missing")
    return meta


def load_guard(path: str | Path, **options: Any) -> Guard:
    """Open a saved guard of any kind (``options`` go to its loader, e.g. ``threads=1`` for ONNX).

    ``threads`` is per session for ONNX guards but process-wide for torch (encoder) guards — torch has no
    per-module thread count — so a server that loads a torch guard with ``threads=1`` slows its own model too.
    """
    meta = read_meta(path)
    cls = resolve(GUARDS, meta["kind"], "guard kind", ModelError)
    return cls.load(Path(path), meta, **options)


def refused(guard: Guard, texts: list[str]) -> list[bool]:
    """The guard's decision for each prompt: True means "do not answer"."""
    return [s >= guard.threshold for s in guard.score(texts)]
