"""Reports: a run folder's results as ``report.md`` and a self-contained ``report.html``; no computation.

Reads each stage folder's ``result.json`` (headline metrics, wall time), ``metrics.jsonl`` (curves) and, if
a stage wrote one, ``report_section.md`` (its own tables; pipe tables become HTML tables) and ``*.png``
plots. Draws one loss-curve plot (training loss, and eval loss where logged) per training stage. Writes ``<run>/report.md``,
``<run>/report.html`` and ``<run>/plots/*.png``.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

from slmkit.artifacts import atomic_write_text, read_json, read_metrics


def stage_folders(run: Path) -> list[Path]:
    """Stage folders of a run, in order (``NN_name``)."""
    return sorted(p for p in run.iterdir() if p.is_dir() and p.name[:2].isdigit() and "_" in p.name)


def write_report(run: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for a run folder; returns their paths."""
    run = Path(run)
    stages = [(folder, read_json(folder / "result.json")) for folder in stage_folders(run)
              if (folder / "result.json").exists()]
    plots = [p for p in (_loss_plot(folder, run / "plots") for folder, _ in stages) if p]
    plots += [p for folder, _ in stages for p in sorted(folder.glob("*.png"))]
    sections = [(folder.name, (folder / "report_section.md").read_text())
                for folder, _ in stages if (folder / "report_section.md").exists()]
    md = _markdown(run.name, stages, plots, sections, run)
    md_path, html_path = run / "report.md", run / "report.html"
    atomic_write_text(md_path, md)
    atomic_write_text(html_path, _html(run.name, stages, plots, sections))
    return md_path, html_path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return json.dumps(value)[:80]
    return str(value)


def _rows(stages: list[tuple[Path, dict]]) -> list[list[str]]:
    rows = []
    for folder, result in stages:
        metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in result.get("metrics", {}).items())
        rows.append([folder.name, result.get("stage", ""), _fmt(result.get("wall_time_s", "")), metrics])
    return rows


def _markdown(name: str, stages, plots, sections, run: Path) -> str:
    out = [f"# Report: {name}\n", "| stage | type | wall time (s) | metrics |", "|---|---|---|---|"]
    out += ["| " + " | ".join(r) + " |" for r in _rows(stages)]
    for plot in plots:
        out.append(f"\n![{plot.stem}]({plot.relative_to(run)})")
    for title, text in sections:
        out.append(f"\n## {title}\n\n{text.strip()}\n")
    return "\n".join(out) + "\n"


def _html(name: str, stages, plots, sections) -> str:
    head = "<tr><th>stage</th><th>type</th><th>wall time (s)</th><th>metrics</th></tr>"
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in _rows(stages))
    imgs = "".join(f'<figure><img alt="{html.escape(p.stem)}" src="data:image/png;base64,'
                   f'{base64.b64encode(p.read_bytes()).decode()}"/><figcaption>{html.escape(p.stem)}'
                   f"</figcaption></figure>" for p in plots)
    secs = "".join(f"<h2>{html.escape(t)}</h2>{_section_html(s)}" for t, s in sections)
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(name)}</title>"
            f"<style>{style}</style></head><body><h1>Report: {html.escape(name)}</h1>"
            f"<table>{head}{body}</table>{imgs}{secs}</body></html>\n")


def _section_html(text: str) -> str:
    """A stage's markdown section as HTML: pipe tables become tables, ``###`` headings and **bold** render."""
    out, table = [], []

    def inline(line: str) -> str:
        return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(line))

    def flush() -> None:
        if table:
            rows = [r for r in table if not re.fullmatch(r"\|?(\s*:?-+:?\s*\|)+\s*", r)]
            cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
            head = "".join(f"<th>{inline(c)}</th>" for c in cells[0])
            body = "".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in r) + "</tr>" for r in cells[1:])
            out.append(f"<table><tr>{head}</tr>{body}</table>")
            table.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    flush()
    return "".join(out)


def _loss_plot(folder: Path, out_dir: Path) -> Path | None:
    rows = read_metrics(folder / "metrics.jsonl")
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and "step" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r and "step" in r]
    if not train:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), marker="o", label="eval loss")
    ax.set(xlabel="step", ylabel="loss per target token", title=f"{folder.name}: loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{folder.name}_loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
