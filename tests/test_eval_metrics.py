"""Answer comparison per type, repeat statistics, noise flags, agreement statistics (checked against scipy/sklearn)."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from slmkit.eval.metrics import (agreement, answers_match, bootstrap_ci, cohen_kappa, spearman, strip_latex,
                                 summarize, t975, to_number, within_noise)


def test_answers_match_by_type():
    assert answers_match("$1,000.", "1000", "number") and answers_match("18 apples", "18", "number")
    assert answers_match("-9867630.0", "-9867630", "number") and not answers_match("3.3", "3.3333", "number")
    assert not answers_match(None, "1", "number") and not answers_match("abc", "1", "number")
    assert answers_match("(c)", "C", "choice") and answers_match("Yes.", "yes", "yesno")
    assert answers_match("\\dfrac{1}{2}", "\\frac12", "math") and answers_match("x = 5", "5", "math")
    assert answers_match("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", "math")
    assert answers_match("10^\\circ", "10", "math") and not answers_match("\\frac{1}{3}", "\\frac{1}{2}", "math")
    assert answers_match("1,2, 3", "1, 2, 3", "list") and not answers_match("1, 3, 2", "1, 2, 3", "list")
    assert to_number("3/4") == 0.75 and to_number("\\frac{3}{4}") == 0.75 and to_number("12:30") is None


def test_strip_latex_examples():
    assert strip_latex("\\text{(A)}") == "(A)" and strip_latex("0.5") == "0.5" and strip_latex(".5") == "0.5"
    assert strip_latex("5\\%") == "5" and strip_latex("\\$18") == "18"


def test_summarize_matches_statistics_and_t_table():
    values = [0.41, 0.38, 0.45]
    s = summarize(values, n_items=200)
    assert s["mean"] == pytest.approx(statistics.mean(values))
    assert s["sd"] == pytest.approx(statistics.stdev(values))
    half = 4.303 * statistics.stdev(values) / math.sqrt(3)
    assert (s["ci_low"], s["ci_high"]) == pytest.approx((s["mean"] - half, s["mean"] + half))
    single = summarize([0.5], 100)
    assert single["sd"] == 0 and math.isnan(single["ci_low"]) and single["se_noise"] == pytest.approx(0.05)
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 10, 29, 30):
        assert t975(df) == pytest.approx(scipy_stats.t.ppf(0.975, df), abs=2e-3)


def test_within_noise_flags():
    a, b = summarize([0.50, 0.52, 0.48], 100), summarize([0.53, 0.55, 0.51], 100)
    assert within_noise(a, b)  # 3 points apart with 100 items: noise
    c, d = summarize([0.20, 0.21, 0.19], 2000), summarize([0.60, 0.61, 0.59], 2000)
    assert not within_noise(c, d)


def test_kappa_and_spearman_match_sklearn_and_scipy():
    sklearn = pytest.importorskip("sklearn.metrics")
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(5):
        human = [rng.randint(0, 1) for _ in range(60)]
        judge = [h if rng.random() < 0.8 else 1 - h for h in human]
        assert cohen_kappa(judge, human) == pytest.approx(sklearn.cohen_kappa_score(judge, human))
        assert spearman(judge, human) == pytest.approx(scipy_stats.spearmanr(judge, human).statistic)
    scores = [rng.choice([1, 2, 2, 3, 5]) for _ in range(40)]
    other = [s + rng.choice([-1, 0, 0, 1]) for s in scores]
    assert spearman(scores, other) == pytest.approx(scipy_stats.spearmanr(scores, other).statistic)


def test_agreement_with_bootstrap_ci():
    rng = random.Random(1)
    human = [rng.randint(0, 1) for _ in range(100)]
    judge = [h if rng.random() < 0.85 else 1 - h for h in human]
    stats = agreement(judge, human)
    assert stats["n"] == 100 and 0.75 < stats["agreement"] < 0.95
    assert stats["kappa_low"] <= stats["kappa"] <= stats["kappa_high"]
    assert stats["spearman_low"] <= stats["spearman"] <= stats["spearman_high"]
    assert bootstrap_ci(spearman, [1, 1, 1], [0, 1, 0])[0] != bootstrap_ci(spearman, [1, 1, 1], [0, 1, 0])[0] \
        or True  # constant raters give nan resamples, dropped without error
    assert cohen_kappa([1, 1], [1, 1]) == 1.0
