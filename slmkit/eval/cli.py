"""``slmkit eval`` and ``slmkit leaderboard``.

``slmkit eval --models runs/a/02_sft/model other/model --tasks gsm8k svamp --strategies direct kshot_cot``
runs the ``eval`` stage as a one-stage recipe (run folder ``runs/<name>/00_eval``, reuse, provenance),
then writes the run report and prints the leaderboard. Any stage field can also be given as
``key=value``. ``slmkit leaderboard PATH`` prints the accuracy tables (mean ± sd, 95% CI, noise flags)
and the footprint of any results store (a ``results.sqlite`` file or a folder holding one).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError

_LIST_FLAGS = ("models", "tasks", "strategies", "methods", "seeds", "perturbations", "compress")


def _spec(text: str) -> dict[str, Any]:
    """"kind=local,model=runs/x" -> {"kind": "local", "model": "runs/x"}."""
    import yaml

    out: dict[str, Any] = {}
    for part in text.split(","):
        if "=" not in part:
            raise ConfigError(f"'{text}': write backend specs as key=value,key=value (e.g. kind=local,model=PATH)")
        key, value = part.split("=", 1)
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def eval_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slmkit eval", description="Evaluate models on reasoning tasks "
                                "(strategies × methods × repeats); see slmkit show-config --stage eval.")
    p.add_argument("--models", nargs="+", help="model folders or hub ids")
    p.add_argument("--tasks", nargs="+", help="task names or task YAML files")
    p.add_argument("--strategies", nargs="+", help="direct, cot, kshot, kshot_cot")
    p.add_argument("--methods", nargs="+", help="strict, flexible, judge, cascade")
    p.add_argument("--seeds", nargs="+", type=int, help="repeat seeds")
    p.add_argument("--perturbations", nargs="+", help="numeric, digit_expansion, distractor, rephrase, typo")
    p.add_argument("--compress", nargs="+", help="int8, int4, pruned")
    p.add_argument("--limit", type=int, help="items per task")
    p.add_argument("--judge", action="append", type=_spec, help="judge backend, e.g. kind=local,model=PATH")
    p.add_argument("--backend", action="append", type=_spec, help="model behind a backend (kind=...,name=...)")
    p.add_argument("--human-labels", help="jsonl of {question, response, gold, human}")
    p.add_argument("--list-tasks", action="store_true", help="list the shipped eval tasks and exit")
    p.add_argument("--config", help="YAML file with eval stage fields")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="eval", help="run name (folder under runs/)")
    p.add_argument("--force", action="store_true", help="start over instead of reusing/resuming")
    p.add_argument("overrides", nargs="*", help="more eval stage fields as key=value")
    args = p.parse_args(argv)
    if args.list_tasks:
        return _list_tasks()
    overrides = list(args.overrides)
    for flag in _LIST_FLAGS:
        if getattr(args, flag) is not None:
            overrides.append(f"{flag}={json.dumps(getattr(args, flag))}")
    for flag, key in (("limit", "limit"), ("human_labels", "human_labels"), ("judge", "judges"),
                      ("backend", "backends")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={json.dumps(getattr(args, flag))}")
    from slmkit.commands import cmd_stage
    from slmkit.report import write_report

    ns = argparse.Namespace(command="eval", overrides=overrides, config=args.config, runs_dir=args.runs_dir,
                            name=args.name, force=args.force)
    cmd_stage(ns)
    run = Path(args.runs_dir) / args.name
    md, html = write_report(run)
    _print_board(_find_store(run), method="flexible", originals_only=True)
    print(f"report: {md}\n        {html}")
    return 0


def _list_tasks() -> int:
    from slmkit.eval.taskspec import EVAL_TASKS, load_spec

    for name in EVAL_TASKS:
        spec = load_spec(name)
        print(f"{name:<22} {spec.answer_type:<7} {spec.description} [{spec.licence}]")
    return 0


def _find_store(path: Path) -> Path:
    if path.is_file():
        return path
    found = sorted(path.rglob("results.sqlite"))
    if not found:
        raise ConfigError(f"{path}: no results.sqlite found (run slmkit eval first)")
    if len(found) > 1:
        raise ConfigError(f"{path} holds several results stores; name one: " + ", ".join(map(str, found)))
    return found[0]


def _print_board(db: Path, task: str | None = None, method: str | None = None,
                 originals_only: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    from slmkit.eval.store import Store
    from slmkit.eval.summary import aggregate, cell_text

    store = Store(db)
    rows = [r for r in aggregate(store) if (task is None or r["task"] == task)
            and (method is None or r["method"] == method) and not (originals_only and "~" in r["task"])]
    console = Console()
    for t in sorted({r["task"] for r in rows}):
        for m in sorted({r["method"] for r in rows if r["task"] == t}):
            sel = [r for r in rows if r["task"] == t and r["method"] == m]
            strategies = list(dict.fromkeys(r["strategy"] for r in sel))
            table = Table(title=f"{t} — {m} ({sel[0]['items']} items, {sel[0]['runs']} runs): "
                                "mean ± sd [95% CI], ★ best, ≈ within noise of best")
            table.add_column("model")
            for s in strategies:
                table.add_column(s)
            for model in sorted({r["model"] for r in sel}):
                cells = {r["strategy"]: cell_text(r) for r in sel if r["model"] == model}
                table.add_row(model, *[cells.get(s, "—") for s in strategies])
            console.print(table)
    foot = store.query("SELECT * FROM footprint ORDER BY model")
    if foot:
        table = Table(title="footprint")
        for col in ("model", "params", "disk MB", "RSS MB", "ms/sample"):
            table.add_column(col)
        for f in foot:
            table.add_row(f["model"], str(f["params"] or "—"), f"{f['disk_mb'] or 0:.2f}",
                          "—" if f["rss_mb"] is None else f"{f['rss_mb']:.1f}", f"{f['ms_per_sample'] or 0:.1f}")
        console.print(table)
    store.close()


def leaderboard_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="slmkit leaderboard", description="Print accuracy tables of a results store.")
    p.add_argument("path", nargs="?", default="runs", help="results.sqlite, or a folder holding one (default: runs)")
    p.add_argument("--task", help="only this task")
    p.add_argument("--method", help="only this method")
    args = p.parse_args(argv)
    _print_board(_find_store(Path(args.path)), args.task, args.method)
    return 0
