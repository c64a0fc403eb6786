"""``slmkit bench``: latency, throughput and memory of models on this machine; ``compare`` prints ratios.

    slmkit bench decoder:small runs/x/02_sft/model --input-lengths 128 512 --batch-sizes 1 8
    slmkit bench compare encdec:small decoder:small --input-lengths 512 --output-lengths 64

Models: ``arch:preset`` (random weights at the preset's default vocabulary; speed does not depend on the
weights), a transformers folder or hub id, or a CTranslate2 export (``slmkit export``). Writes
``results.json``, ``results.csv``, ``latency_vs_input.png`` and ``throughput_vs_batch.png`` into ``--out``
and prints the medians (and, for ``compare``, first model / second model ratios). The timing method is in
``slmkit.bench.latency``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from slmkit.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slmkit bench", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="[compare] MODEL [MODEL ...]: arch:preset, folder, hub id or export")
    p.add_argument("--input-lengths", type=int, nargs="+", default=[128, 512], help="prompt tokens")
    p.add_argument("--output-lengths", type=int, nargs="+", default=[64], help="generated tokens (>= 2)")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8], help="prompts per batch")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per point (median reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed short runs per point and model")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="float32", help="weights of transformers models: float32, bfloat16, ...")
    p.add_argument("--attn", default="default", help="attention kernel of transformers models: default, eager, sdpa")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", default="bench-results", help="folder for results.json/.csv and plots")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    compare = args.models[0] == "compare"
    models = args.models[1:] if compare else args.models
    if compare and len(models) != 2:
        raise ConfigError("bench compare: give exactly two models (MODEL BASELINE)")
    records, ratio_rows, env = bench(models, args, compare)
    from slmkit.bench.report import write_results

    paths = write_results(args.out, records, ratio_rows, env)
    _print(records, ratio_rows)
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def bench(models: list[str], args: Any, compare: bool) -> tuple[list[dict], list[dict], dict]:
    """Load the models, time the grid (models interleaved) and compute ratios."""
    import torch

    from slmkit.bench.latency import environment, make_runner, ratios, time_grid

    if args.threads:
        torch.set_num_threads(args.threads)
    if min(args.output_lengths) < 2:
        raise ConfigError("bench: --output-lengths must be at least 2")
    runners = [make_runner(m, device=args.device, dtype=args.dtype, attn=args.attn, threads=args.threads)
               for m in models]
    if len({r.name for r in runners}) != len(runners):
        raise ConfigError("bench: the same model is named twice")
    records = time_grid(runners, args.input_lengths, args.output_lengths, args.batch_sizes, args.repeats,
                        args.warmup)
    ratio_rows = ratios(records, runners[0].name, runners[1].name) if compare else []
    return records, ratio_rows, environment(args.threads or None)


def _print(records: list[dict], ratio_rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="medians (min-max spread in results.json)")
    cols = ("model", "batch", "input_len", "output_len", "ttft_s", "prefill_tok_s", "decode_tok_s", "e2e_s",
            "peak_mem_delta_mb", "params", "disk_mb")
    for c in cols:
        table.add_column(c)
    for r in records:
        table.add_row(*(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    if ratio_rows:
        ratio_table = Table(title=f"{ratio_rows[0]['model']} / {ratio_rows[0]['baseline']}")
        rcols = ("batch", "input_len", "output_len", "ttft_ratio", "decode_speedup", "e2e_ratio",
                 "peak_mem_delta_ratio")
        for c in rcols:
            ratio_table.add_column(c)
        for r in ratio_rows:
            ratio_table.add_row(*(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in rcols))
        console.print(ratio_table)
