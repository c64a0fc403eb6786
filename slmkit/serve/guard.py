"""The guard hook of the server: a prompt classifier in front of the model (LiteLMGuard, arXiv 2505.05619).

Any object with ``score(texts) -> list[float]`` (the probability that each prompt should NOT be answered)
is a guard; a prompt whose score reaches ``threshold`` is refused. The server answers a refused request
normally (HTTP 200) with the refusal message as the choice text, ``finish_reason: "content_filter"``,
the chat message's ``refusal`` field and a top-level ``guard`` record, and counts it in ``/metrics``.

``load_guard(spec)`` accepts ``module:factory`` (a callable returning a guard) or a folder saved by
slmkit's guard stage, loaded through ``slmkit.guard`` (``GUARD_LOADER``) when that package is present.
A guard that carries its calibrated ``threshold`` keeps it unless one is given here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError

GUARD_LOADER = "slmkit.guard:load_guard"
DEFAULT_REFUSAL = "I'm sorry, but I can't help with that request."


@dataclass
class Guard:
    """A scorer plus the decision threshold and the refusal text."""

    scorer: Any
    threshold: float = 0.5
    refusal: str = DEFAULT_REFUSAL

    def check(self, texts: list[str]) -> list[float]:
        """Scores in [0, 1], one per text; a scorer returning anything else is a bug worth failing on."""
        scores = [float(s) for s in self.scorer.score(texts)]
        if len(scores) != len(texts):
            raise ValueError(f"guard returned {len(scores)} scores for {len(texts)} texts")
        return scores

    def blocked(self, score: float) -> bool:
        return score >= self.threshold


def load_guard(spec: str, threshold: float | None = None, refusal: str | None = None) -> Guard:
    """A guard from ``module:factory`` or a saved guard folder (see the module docstring)."""
    if ":" in spec and not Path(spec).exists():
        module, name = spec.split(":", 1)
        try:
            scorer = getattr(importlib.import_module(module), name)()
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"guard '{spec}' cannot be loaded: {err}") from err
    else:
        if not Path(spec).exists():
            raise ConfigError(f"guard '{spec}' is neither a folder nor a 'module:factory'")
        module, name = GUARD_LOADER.split(":")
        try:
            loader = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as err:
            raise ConfigError(f"guard folder '{spec}' needs slmkit's guard package ({GUARD_LOADER}), "
                              f"which is not available: {err}") from err
        scorer = loader(spec)
    if not callable(getattr(scorer, "score", None)):
        raise ConfigError(f"guard '{spec}' has no score(texts) method")
    threshold = threshold if threshold is not None else float(getattr(scorer, "threshold", 0.5))
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"guard threshold {threshold} is outside [0, 1]")
    return Guard(scorer, threshold, refusal or getattr(scorer, "refusal", None) or DEFAULT_REFUSAL)
