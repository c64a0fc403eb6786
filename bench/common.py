"""Shared plumbing of the benchmark scripts: target records, printing and ``bench/results/<name>.json``.

Each script measures both sides of a comparison in one run on this machine, then calls
``report(name, records)`` which prints every figure beside its target and writes the JSON list of
``{"name", "value", "target", "met"}`` records. A missed target is reported as missed, never hidden.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Record:
    """One measured figure against its target (``met`` is None for figures reported without a target)."""

    name: str
    value: Any
    target: str
    met: bool | None


def check(name: str, value: float, op: str, threshold: float, unit: str = "") -> Record:
    """A record for ``value op threshold`` (op one of >=, <=, >, <); NaN compares false, so it is missed."""
    ops = {">=": value >= threshold, "<=": value <= threshold, ">": value > threshold, "<": value < threshold}
    return Record(name, round(value, 6) if isinstance(value, float) else value, f"{op} {threshold}{unit}", ops[op])


def info(name: str, value: Any) -> Record:
    """A figure reported for context, with no target."""
    return Record(name, value, "(reported)", None)


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (sd 0 for a single seed)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(bench: str, records: list[Record], folder: Path | None = None) -> Path:
    """Print the records as a table and write ``<folder>/<bench>.json`` (default ``bench/results/``)."""
    folder = folder or RESULTS
    width = max(len(r.name) for r in records)
    print(f"\n== {bench} ({platform.node()}, {os.cpu_count()} CPUs, python {sys.version.split()[0]})")
    for r in records:
        mark = {True: "met", False: "MISSED", None: ""}[r.met]
        print(f"{r.name:<{width}}  {str(r.value):>14}  target {r.target:<14} {mark}")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{bench}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps([asdict(r) | {"value": _json_value(r.value)} for r in records], indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def _json_value(value: Any) -> Any:
    """``value``, or None where it is a non-finite float (a ratio with nothing to divide by): NaN is not JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value
