"""The fast baseline guard: character + word n-gram TF-IDF features and logistic regression (scikit-learn).

Features are hashed (``HashingVectorizer``: character n-grams within word boundaries and word uni/bigrams),
so the model needs no vocabulary file; term frequencies are sub-linear (log1p), weighted by smoothed IDF
and L2-normalised, then scored by logistic regression with balanced class weights. Long prompts are cut
into word windows and scored chunk-and-max (see ``windows``). Saved without pickle: IDF, coefficients and
intercept in ``ngram.safetensors``, the feature settings in ``guard.json``.
"""

from __future__ import annotations

import math
import random
import re
from pathlib import Path
from typing import Any

from slmkit.guard.windows import max_per_text, training_windows, window_bounds

WEIGHTS = "ngram.safetensors"
FEATURES = {"char_ngrams": [2, 5], "word_ngrams": [1, 2], "n_features": 2 ** 19}


def word_offsets(text: str) -> list[tuple[int, int]]:
    """Character offsets of the whitespace-separated words of ``text``."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)] or [(0, 0)]


class NgramGuard:
    """Hashed n-gram TF-IDF + logistic regression; ``score`` is chunk-and-max over word windows."""

    kind = "ngram"

    def __init__(self, idf: Any, coef: Any, intercept: float, threshold: float, window: int, stride: int,
                 features: dict[str, Any] | None = None):
        self.idf, self.coef, self.intercept = idf, coef, float(intercept)
        self.threshold, self.window, self.stride = threshold, window, stride
        self.features = dict(features or FEATURES)
        self._vectorizers = _vectorizers(self.features)

    def counts(self, texts: list[str]) -> Any:
        """Sparse hashed n-gram counts, char features then word features."""
        from scipy.sparse import hstack

        return hstack([v.transform(texts) for v in self._vectorizers]).tocsr()

    def tfidf(self, texts: list[str]) -> Any:
        return _weight(self.counts(texts), self.idf)

    def window_texts(self, text: str) -> list[str]:
        offsets = word_offsets(text)
        return [text[offsets[s][0]:offsets[e - 1][1]] for s, e in window_bounds(len(offsets), self.window,
                                                                                   self.stride)]

    def score(self, texts: list[str]) -> list[float]:
        pieces, owners = [], []
        for i, text in enumerate(texts):
            for piece in self.window_texts(text):
                pieces.append(piece)
                owners.append(i)
        if not pieces:
            return []
        logits = self.tfidf(pieces) @ self.coef + self.intercept
        probs = [1.0 / (1.0 + math.exp(-float(z))) for z in logits]
        return max_per_text(probs, owners, len(texts))

    @classmethod
    def fit(cls, texts: list[str], labels: list[int], spans: list[Any], *, window: int, stride: int,
            c: float, seed: int) -> NgramGuard:
        """Train on rows (jailbreak-wrapped rows give their question window and a template-only window)."""
        import numpy as np
        from sklearn.linear_model import LogisticRegression

        rng = random.Random(seed)
        pieces, ys = [], []
        for text, y, sp in zip(texts, labels, spans):
            offsets = word_offsets(text)
            for (s, e), wy in training_windows(offsets, y, sp, window, stride, rng):
                pieces.append(text[offsets[s][0]:offsets[e - 1][1]])
                ys.append(wy)
        guard = cls(idf=None, coef=None, intercept=0.0, threshold=0.5, window=window, stride=stride)
        counts = guard.counts(pieces)
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        guard.idf = (np.log((1 + len(pieces)) / (1 + df)) + 1).astype(np.float32)
        model = LogisticRegression(C=c, class_weight="balanced", solver="liblinear", max_iter=1000,
                                   random_state=seed)
        model.fit(_weight(counts, guard.idf), np.asarray(ys))
        guard.coef = model.coef_[0].astype(np.float32)
        guard.intercept = float(model.intercept_[0])
        return guard

    def save(self, folder: Path) -> dict[str, Any]:
        """Write the weights; returns the fields this kind adds to ``guard.json``."""
        import numpy as np
        from safetensors.numpy import save_file

        save_file({"idf": self.idf, "coef": self.coef, "intercept": np.asarray([self.intercept], np.float32)},
                  str(folder / WEIGHTS))
        return {"window": self.window, "stride": self.stride, "features": self.features}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any], threads: int | None = None) -> NgramGuard:
        from safetensors.numpy import load_file

        from slmkit.errors import ModelError

        if not (folder / WEIGHTS).is_file():
            raise ModelError(f"{folder}: {WEIGHTS} is missing")
        w = load_file(str(folder / WEIGHTS))
        return cls(w["idf"], w["coef"], float(w["intercept"][0]), meta["threshold"], meta["window"],
                   meta["stride"], meta.get("features"))


def _vectorizers(features: dict[str, Any]) -> list[Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"n_features": features["n_features"], "alternate_sign": False, "norm": None, "lowercase": True}
    return [HashingVectorizer(analyzer="char_wb", ngram_range=tuple(features["char_ngrams"]), **common),
            HashingVectorizer(analyzer="word", ngram_range=tuple(features["word_ngrams"]),
                              token_pattern=r"(?u)\b\w+\b", **common)]


def _weight(counts: Any, idf: Any) -> Any:
    """Sub-linear TF x IDF, then L2 row normalisation."""
    import numpy as np
    from sklearn.preprocessing import normalize

    x = counts.astype("float32")
    x.data = 1.0 + np.log(x.data)
    x = x.multiply(idf).tocsr()
    return normalize(x, norm="l2", copy=False)
