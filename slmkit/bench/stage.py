"""The ``efficiency`` stage: a model (and optionally a baseline and a deployed export) timed side by side, with quality.

Reads model folders (``model``, ``baseline``; or ``arch:preset`` names), an optional CTranslate2 export
of ``model`` (``deployed``) and optional ``exact_match`` predictions of both models. Times the grid with
``slmkit.bench.latency`` (models interleaved run by run) and writes ``results.json``, ``results.csv``,
the two plots and ``report_section.md``: accuracy, parameters and speed of both models and the
``model / baseline`` ratios, so one report answers "same parameters, same training: which is better and
faster?". Metrics: accuracies and the ratios at the largest input length and batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field


@dataclass(frozen=True, kw_only=True)
class Config:
    model: str | None = field(None, doc="model folder, hub id or arch:preset to time", input=True)
    baseline: str | None = field(None, doc="model to compare with (ratios are model / baseline)", input=True)
    deployed: str | None = field(None, doc="CTranslate2 export of model, timed as a third runner", input=True)
    predictions: str | None = field(None, doc="exact_match predictions of model (for its accuracy)", input=True)
    baseline_predictions: str | None = field(None, doc="exact_match predictions of baseline", input=True)
    input_lengths: list[int] = field(factory=lambda: [128, 512], doc="prompt lengths in tokens")
    output_lengths: list[int] = field(factory=lambda: [64], doc="generated tokens per run (>= 2)")
    batch_sizes: list[int] = field(factory=lambda: [1, 8], doc="prompts per batch")
    repeats: int = field(3, doc="timed runs per grid point (median reported)")
    warmup: int = field(1, doc="untimed short runs per grid point and model")
    threads: int = field(0, doc="CPU threads (0: torch's default)")
    attn: str = field("eager", doc="attention kernel of transformers models (eager: the same for both kinds)")


OUTPUTS = {"bench": "results.json"}


def accuracy(path: str | None) -> float | None:
    """Share of correct predictions in an exact_match ``predictions.jsonl``."""
    if not path:
        return None
    from slmkit.artifacts import read_jsonl

    rows = read_jsonl(path)
    return sum(bool(r["correct"]) for r in rows) / max(len(rows), 1)


def run(cfg: Config, run_dir: Path) -> Result:
    import torch

    from slmkit.artifacts import atomic_write_text
    from slmkit.bench.latency import environment, make_runner, ratios, time_grid
    from slmkit.bench.report import write_results
    from slmkit.errors import ConfigError

    if not cfg.model:
        raise ConfigError("efficiency: model is not set (wire it with from:, or give a folder or arch:preset)")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    labelled = {label: make_runner(spec, attn=cfg.attn, threads=cfg.threads)
                for label, spec in (("model", cfg.model), ("baseline", cfg.baseline), ("deployed", cfg.deployed))
                if spec}
    for label, runner in labelled.items():
        runner.name = f"{label}:{runner.kind}:{runner.runtime}"
    runners = list(labelled.values())
    records = time_grid(runners, cfg.input_lengths, cfg.output_lengths, cfg.batch_sizes, cfg.repeats, cfg.warmup)
    metrics: dict[str, Any] = {}
    ratio_rows = []
    for numerator, denominator, prefix in (("model", "baseline", ""), ("deployed", "model", "deployed_")):
        if numerator in labelled and denominator in labelled:
            rows = ratios(records, labelled[numerator].name, labelled[denominator].name)
            top = max(rows, key=lambda r: (r["input_len"], r["batch"]))
            metrics.update({prefix + "ttft_ratio": top["ttft_ratio"], prefix + "decode_speedup": top["decode_speedup"]})
            ratio_rows += rows
    write_results(run_dir, records, ratio_rows, environment(cfg.threads or None))
    acc = {"model": accuracy(cfg.predictions), "baseline": accuracy(cfg.baseline_predictions)}
    metrics.update({f"{k}_accuracy": v for k, v in acc.items() if v is not None})
    atomic_write_text(run_dir / "report_section.md", _section(labelled, acc, records, ratio_rows))
    return Result(metrics=metrics)


def _section(labelled: dict[str, Any], acc: dict[str, float | None], records: list[dict],
             ratio_rows: list[dict]) -> str:
    from slmkit.bench.report import markdown

    lines = ["| runner | kind | parameters | accuracy (exact match) |", "|---|---|---|---|"]
    for label, r in labelled.items():
        a = acc.get(label)
        lines.append(f"| {r.name} | {r.kind} | {r.params:,} | {'' if a is None else f'{a:.3f}'} |")
    return ("Speed on this machine (medians of the timed runs). Ratios: model / baseline and deployed / model; "
            "ttft_ratio < 1 and decode_speedup > 1 favour the first.\n\n" + "\n".join(lines) + "\n\n"
            + markdown(records, ratio_rows))
