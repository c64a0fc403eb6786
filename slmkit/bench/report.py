"""Benchmark outputs: ``results.json`` (environment, records, ratios), ``results.csv``, two plots, a markdown table.

Plots: time to first token against input length (one line per model, at the smallest batch and the
largest output length) and decode throughput against batch size (at the largest input length).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_write_json, atomic_write_text

COLUMNS = ("model", "runtime", "kind", "params", "disk_mb", "batch", "input_len", "output_len", "ttft_s",
           "prefill_tok_s", "decode_tok_s", "e2e_s", "peak_mem_delta_mb")


def write_results(out: str | Path, records: list[dict], ratios: list[dict], env: dict[str, Any]) -> list[Path]:
    """Write every output into ``out``; returns the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "results.json", {"environment": env, "records": records, "ratios": ratios})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(records[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic_write_text(out / "results.csv", buf.getvalue())
    paths = [out / "results.json", out / "results.csv"]
    return paths + plot(records, out)


def plot(records: list[dict], out: Path) -> list[Path]:
    """The two plots (skipped without matplotlib, which is the ``report`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    batch, out_len = min(r["batch"] for r in records), max(r["output_len"] for r in records)
    in_len = max(r["input_len"] for r in records)
    paths = []
    for name, x, y, keep, ylabel in (
            ("latency_vs_input", "input_len", "ttft_s",
             lambda r: r["batch"] == batch and r["output_len"] == out_len, f"time to first token (s), batch {batch}"),
            ("throughput_vs_batch", "batch", "decode_tok_s",
             lambda r: r["input_len"] == in_len and r["output_len"] == out_len,
             f"decode tokens/s, input {in_len}")):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for model in dict.fromkeys(r["model"] for r in records):
            rows = sorted((r for r in records if r["model"] == model and keep(r)), key=lambda r: r[x])
            if rows:
                lo = [r[y] - r[y + "_min"] for r in rows]
                hi = [r[y + "_max"] - r[y] for r in rows]
                ax.errorbar([r[x] for r in rows], [r[y] for r in rows], yerr=[lo, hi], marker="o", capsize=3,
                            label=model)
        ax.set(xlabel=x.replace("_", " "), ylabel=ylabel, title=name.replace("_", " "))
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=100)
        plt.close(fig)
        paths.append(out / f"{name}.png")
    return paths


def markdown(records: list[dict], ratios: list[dict]) -> str:
    """Records (medians) and ratios as markdown tables."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |" for r in records]
    if ratios:
        cols = ("model", "baseline", "batch", "input_len", "output_len", "ttft_ratio", "decode_speedup",
                "e2e_ratio", "peak_mem_delta_ratio")
        lines += ["", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in ratios]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
