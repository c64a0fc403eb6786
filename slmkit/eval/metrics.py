"""Answer comparison by answer type, statistics over repeats, and agreement statistics.

Comparison (``answers_match``): ``number`` (numeric with tolerance — GSM-Hard has float targets),
``choice`` (option letter), ``yesno``, ``math`` (MATH answers: LaTeX normalised as in Hendrycks et al.
2021's ``is_equiv``/``strip_string``, then compared as strings or numbers), ``list`` and ``text``.

Repeats (``summarize``): mean, sample sd (ddof=1) and a 95% t-interval over independent runs (seeds),
the variance *across runs* that lm-eval's single-run bootstrap stderr does not show (lm-eval #2089).
``within_noise`` flags a difference smaller than its noise: |Δ| < 1.96·√(se_a² + se_b²) with
se² = sd²/runs + p(1−p)/items (run-to-run spread plus the binomial spread of a finite test set).

Agreement of a judge with humans: raw agreement, Cohen's κ (Cohen 1960) and Spearman's ρ (ties get
average ranks) with a percentile bootstrap CI over items.
"""

from __future__ import annotations

import math
import random
import re
from typing import Any

from slmkit.eval.extractors import normalize

ANSWER_TYPES = ("number", "choice", "yesno", "math", "list", "text")
# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 + 2.5/df.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042)


def to_number(text: str | None) -> float | None:
    """A float from "1,000", "$18.", "18 apples", "3/4" or "\\frac{3}{4}"; None if it is not a number."""
    if text is None:
        return None
    bare = text.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    frac = re.fullmatch(r"\\d?frac\{(-?\d+(?:\.\d+)?)\}\{(-?\d+(?:\.\d+)?)\}|(-?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", bare)
    if frac:
        num, den = (frac.group(1), frac.group(2)) if frac.group(1) else (frac.group(3), frac.group(4))
        return float(num) / float(den) if float(den) else None
    lead = re.match(r"^-?\d+(?:\.\d+)?(?:e-?\d+)?", bare)
    if lead is None or not re.fullmatch(r"[\s%a-zA-Z]*", bare[lead.end():]):
        return None
    return float(lead.group(0))


def strip_latex(answer: str) -> str:
    """MATH-style normalisation (Hendrycks et al. 2021 ``strip_string``, the common subset)."""
    s = answer.strip().replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = re.sub(r"\\text\{\s*[a-zA-Z ]*\}$", "", s)  # trailing units
    s = re.sub(r"\\(?:text|mbox|mathrm)\{(.*?)\}", r"\1", s)
    s = s.replace("\\%", "").replace("%", "").replace(" .", " 0.").replace("{.", "{0.")
    s = re.sub(r"^\s*[a-zA-Z]\s*=\s*", "", s)  # "x = 5" -> "5"
    s = re.sub(r"\\frac(\d)(\d)", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "").rstrip(".")
    if s.startswith("."):
        s = "0" + s
    return "0.5" if s == "\\frac{1}{2}" else s


def answers_match(extracted: str | None, gold: str, answer_type: str) -> bool:
    """Whether an extracted answer equals the gold answer under the task's answer type."""
    if extracted is None:
        return False
    if answer_type == "number":
        a, b = to_number(extracted), to_number(gold)
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-3)
    if answer_type == "choice":
        return extracted.strip().strip("().").upper() == gold.strip().upper()
    if answer_type == "yesno":
        return extracted.strip().rstrip(".").lower() == gold.strip().lower()
    if answer_type == "math":
        a, b = strip_latex(extracted), strip_latex(gold)
        if a == b:
            return True
        x, y = to_number(a), to_number(b)
        return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-9)
    if answer_type == "list":
        return re.sub(r"\s+", "", extracted).strip(",[]") == re.sub(r"\s+", "", gold).strip(",[]")
    return normalize(extracted) == normalize(gold)


def t975(df: int) -> float:
    """Two-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.5 / df


def summarize(values: list[float], n_items: int) -> dict[str, Any]:
    """Mean, sd (ddof=1), 95% CI over runs and the noise-model standard error of the mean."""
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    half = t975(n - 1) * sd / math.sqrt(n) if n > 1 else float("nan")
    binom = mean * (1 - mean) / n_items if n_items else 0.0
    return {"mean": mean, "sd": sd, "runs": n, "ci_low": mean - half, "ci_high": mean + half,
            "se_noise": math.sqrt(sd ** 2 / max(n, 1) + binom), "items": n_items}


def within_noise(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two summaries differ by no more than 1.96 combined noise standard errors (ties included)."""
    return abs(a["mean"] - b["mean"]) <= 1.96 * math.sqrt(a["se_noise"] ** 2 + b["se_noise"] ** 2)


def cohen_kappa(a: list[Any], b: list[Any]) -> float:
    """Cohen's κ of two raters over the same items (1.0 when both are constant and equal)."""
    n = len(a)
    labels = sorted(set(a) | set(b), key=str)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((a.count(c) / n) * (b.count(c) / n) for c in labels)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's ρ: Pearson correlation of average ranks (nan when one side is constant)."""
    ra, rb = _ranks(a), _ranks(b)
    n = len(ra)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def bootstrap_ci(stat: Any, a: list, b: list, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile 95% CI of ``stat(a, b)`` over item resamples (nan resamples are dropped)."""
    rng = random.Random(seed)
    n = len(a)
    values = []
    for _ in range(n_boot):
        idx = [rng.randrange(n) for _ in range(n)]
        value = stat([a[i] for i in idx], [b[i] for i in idx])
        if not math.isnan(value):
            values.append(value)
    if not values:
        return float("nan"), float("nan")
    values.sort()
    return values[int(0.025 * (len(values) - 1))], values[int(0.975 * (len(values) - 1))]


def agreement(judge: list[int], human: list[int], seed: int = 0) -> dict[str, float]:
    """Agreement, Cohen's κ and Spearman ρ (with bootstrap CI) of judge verdicts against human labels."""
    rho_lo, rho_hi = bootstrap_ci(spearman, judge, human, seed=seed)
    kappa_lo, kappa_hi = bootstrap_ci(cohen_kappa, judge, human, seed=seed)
    return {"n": len(judge), "agreement": sum(x == y for x, y in zip(judge, human)) / len(judge),
            "kappa": cohen_kappa(judge, human), "kappa_low": kappa_lo, "kappa_high": kappa_hi,
            "spearman": spearman(judge, human), "spearman_low": rho_lo, "spearman_high": rho_hi}
