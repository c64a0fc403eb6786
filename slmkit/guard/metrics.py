"""Guard metrics: confusion-matrix rates, threshold calibration for a target false-positive rate, latency.

The positive class is ``refuse`` (should not be answered), as in LiteLMGuard (arXiv 2505.05619, Table 3):
TPR/recall is the share of harmful prompts stopped, FPR the share of answerable prompts refused
(over-refusal), FNR = 1 - TPR, TNR = 1 - FPR. A prompt is refused when its score >= the threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float]:
    """accuracy, precision, recall, f1, tpr, tnr, fpr, fnr and the counts, for one threshold."""
    tp = fp = tn = fn = 0
    for y, s in zip(labels, scores):
        flagged = s >= threshold
        if y:
            tp, fn = tp + flagged, fn + (not flagged)
        else:
            fp, tn = fp + flagged, tn + (not flagged)
    pos, neg = tp + fn, fp + tn
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / pos if pos else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else (0.0 if pos else float("nan"))
    return {"n": pos + neg, "positives": pos, "negatives": neg,
            "accuracy": (tp + tn) / max(1, pos + neg), "precision": precision, "recall": recall, "f1": f1,
            "tpr": recall, "tnr": tn / neg if neg else float("nan"), "fpr": fp / neg if neg else float("nan"),
            "fnr": fn / pos if pos else float("nan"), "tp": tp, "fp": fp, "tn": tn, "fn": fn}


def flag_rate(scores: Sequence[float], threshold: float) -> float:
    """Share of prompts flagged (refused): detection on harmful sets, over-refusal on benign ones."""
    return sum(s >= threshold for s in scores) / max(1, len(scores))


def threshold_for_fpr(labels: Sequence[int], scores: Sequence[float], target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate on these (validation) rows is at most ``target_fpr``.

    With ``k = floor(target_fpr * negatives)`` refusals allowed, it sits just above the (k+1)-th highest
    answerable score, so every harmful prompt scoring above that is still caught.
    """
    negatives = sorted((s for y, s in zip(labels, scores) if not y), reverse=True)
    if not negatives:
        raise ValueError("threshold calibration needs answerable (negative) validation rows")
    k = math.floor(target_fpr * len(negatives) + 1e-9)
    if k >= len(negatives):
        return 0.0
    return math.nextafter(negatives[k], math.inf)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)
