"""The guard evaluation as Markdown tables and a score-distribution plot (no computation here).

Reads the dict built by ``evaluate.evaluate``; writes nothing itself (the stage writes the files).
The data licences travel with the report: several sources are non-commercial (CC BY-NC 4.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

RATES = ("accuracy", "precision", "recall", "f1", "tpr", "tnr", "fpr", "fnr")


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.2f}%"


def markdown(result: dict[str, Any]) -> str:
    """The report section: headline rates, held-out sources, jailbreaks, over-refusal, latency, size."""
    lines = [f"### Guard evaluation ({result['kind']}{', ' + result['shipped'] if result.get('shipped') else ''},"
             f" threshold {result['threshold']:.4f})", "",
             "| split | n | " + " | ".join(RATES) + " |", "|---|---|" + "---|" * len(RATES)]
    for name in ("in_distribution", "in_distribution_wrapped"):
        m = result[name]
        lines.append(f"| {name} | {m['n']} | " + " | ".join(_pct(m[k]) for k in RATES) + " |")
    lines += ["", "| prompts | flagged (refused) | n |", "|---|---|---|"]
    for name in ("heldout_harmful", "wrapped_heldout_harmful", "wrapped_benign", "heldout_benign",
                 "xstest_safe", "xstest_unsafe"):
        lines.append(f"| {name} | {_pct(result[name]['rate'])} | {result[name]['n']} |")
    lines += ["", "| held-out source | label | flagged | n |", "|---|---|---|---|"]
    for source, r in result["heldout_sources"].items():
        lines.append(f"| {source} | {r['label']} | {_pct(r['rate'])} | {r['n']} |")
    lines += ["", "| test source | label | flagged | n |", "|---|---|---|---|"]
    for source, r in result["test_sources"].items():
        lines.append(f"| {source} | {r['label']} | {_pct(r['rate'])} | {r['n']} |")
    lines += ["", "| XSTest type (evaluation only) | label | flagged | n |", "|---|---|---|---|"]
    for kind, r in result.get("xstest_types", {}).items():
        lines.append(f"| {kind} | {r['label']} | {_pct(r['rate'])} | {r['n']} |")
    if "latency" in result:
        lines += ["", "| batch-1 latency | p50 ms | p95 ms | n |", "|---|---|---|---|"]
        for name, lat in result["latency"].items():
            lines.append(f"| {name} | {lat['p50_ms']:.2f} | {lat['p95_ms']:.2f} | {lat['n']} |")
    lines += ["", "Model size on disk: " + ", ".join(f"{k} {v:.1f} MB" for k, v in result["size_mb"].items())]
    if "quant_safety" in result:
        q = result["quant_safety"]
        lines += ["", "Quantization safety check (answered-harmful rate over "
                  f"{q['prompts']} held-out harmful prompts, model `{q['model']}`):", "",
                  "| model | no guard | with guard |", "|---|---|---|",
                  f"| fp32 | {_pct(q['fp32_no_guard'])} | {_pct(q['fp32_guarded'])} |",
                  f"| int8 | {_pct(q['int8_no_guard'])} | {_pct(q['int8_guarded'])} |", "",
                  "With a tiny model this checks the mechanics (guard in front of fp32 and int8 variants), "
                  "not the safety of a real SLM."]
    if result.get("licences"):
        lines += ["", "Data licences: " + "; ".join(f"{k}: {v}" for k, v in result["licences"].items())
                  + ". Non-commercial sources (CC BY-NC 4.0) limit use of this guard to research."]
    return "\n".join(lines) + "\n"


def plot_scores(scored: dict[str, list[dict]], threshold: float, path: Path) -> Path | None:
    """Histograms of scores: test answerable vs not, and XSTest safe, with the threshold line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = {"test: should answer": [r["score"] for r in scored["test"] if not r["label"]],
              "test: should refuse": [r["score"] for r in scored["test"] if r["label"]],
              "XSTest safe": [r["score"] for r in scored["xstest"] if not r["label"]]}
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for name, values in groups.items():
        if values:
            ax.hist(values, bins=40, range=(0, 1), alpha=0.5, label=f"{name} ({len(values)})", density=True)
    ax.axvline(threshold, color="k", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_xlabel("guard score (probability: do not answer)")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
