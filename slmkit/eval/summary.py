"""Everything computed from the results store for people: aggregates, tables, plot, footprint, agreement.

``aggregate`` turns per-seed result rows into mean ± sd and 95% CI per model × task × strategy × method
and flags, within each task × strategy × method, the models indistinguishable from the best
(``metrics.within_noise``). ``robustness`` pairs each perturbed item with its original (Δ accuracy per
kind); ``step_table`` summarises step checking. ``write_outputs`` writes ``summary.json``,
``report_section.md`` and ``accuracy_vs_footprint.png`` into the stage folder (picked up by
``slmkit report``); ``slmkit leaderboard`` prints the same tables from any store.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from slmkit.eval.metrics import agreement, summarize, within_noise
from slmkit.eval.store import Store


def aggregate(store: Store, where: str = "", args: tuple = ()) -> list[dict[str, Any]]:
    """Mean ± sd / CI over seeds per model × task × strategy × method, with noise flags."""
    rows = store.query("SELECT * FROM results" + (f" WHERE {where}" if where else "") +
                       " ORDER BY task, method, strategy, model, seed", args)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["task"], r["strategy"], r["method"])].append(r)
    out = []
    for (model, task, strategy, method), runs in groups.items():
        stats = summarize([r["accuracy"] for r in runs], runs[0]["n"])
        stats["parse_failure_rate"] = sum(r["parse_failure_rate"] for r in runs) / len(runs)
        stats["judge_calls"] = sum(r["judge_calls"] or 0 for r in runs)
        out.append({"model": model, "task": task, "strategy": strategy, "method": method, **stats})
    _flag(out)
    return out


def _flag(rows: list[dict[str, Any]]) -> None:
    """Mark the best model of each task × strategy × method and those within noise of it."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["task"], r["strategy"], r["method"])].append(r)
    for members in groups.values():
        best = max(members, key=lambda r: r["mean"])
        for r in members:
            r["best"] = r is best
            r["within_noise"] = r is not best and within_noise(r, best)


def cell_text(r: dict[str, Any]) -> str:
    """"0.412 ± 0.013 [0.380, 0.444] pf 5%" with ★ for the best and ≈ for within noise of it."""
    mark = " ★" if r.get("best") else (" ≈" if r.get("within_noise") else "")
    ci = f" [{r['ci_low']:.3f}, {r['ci_high']:.3f}]" if r["runs"] > 1 else ""
    return f"{r['mean']:.3f} ± {r['sd']:.3f}{ci} pf {100 * r['parse_failure_rate']:.0f}%{mark}"


def robustness(store: Store) -> list[dict[str, Any]]:
    """Δ accuracy per perturbation kind on the same items, per model × task × strategy × method."""
    rows = store.query(
        "SELECT p.model, p.task AS variant, p.strategy, p.method, p.seed, AVG(p.correct) AS acc, "
        "AVG(o.correct) AS base, COUNT(*) AS n FROM predictions p JOIN predictions o ON o.model = p.model "
        "AND o.strategy = p.strategy AND o.method = p.method AND o.seed = p.seed AND o.item_id = p.item_id "
        "AND o.task = substr(p.task, 1, instr(p.task, '~') - 1) WHERE instr(p.task, '~') > 0 "
        "GROUP BY p.model, p.task, p.strategy, p.method, p.seed")
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["variant"], r["strategy"], r["method"])].append(r)
    out = []
    for (model, variant, strategy, method), runs in groups.items():
        task, _, kind = variant.partition("~")
        base = sum(r["base"] for r in runs) / len(runs)
        acc = sum(r["acc"] for r in runs) / len(runs)
        out.append({"model": model, "task": task, "kind": kind, "strategy": strategy, "method": method,
                    "items": runs[0]["n"], "original": base, "perturbed": acc, "delta": acc - base})
    return out


def step_table(store: Store) -> list[dict[str, Any]]:
    """Step accuracy, share of outputs with a wrong step, first wrong step, right-answer-wrong-step count."""
    return store.query(
        "SELECT model, task, strategy, COUNT(*) AS outputs, SUM(n_steps > 0) AS with_steps, "
        "1.0 * SUM(n_correct) / MAX(SUM(n_steps), 1) AS step_accuracy, "
        "1.0 * SUM(first_wrong IS NOT NULL) / MAX(SUM(n_steps > 0), 1) AS wrong_step_share, "
        "AVG(first_wrong) AS mean_first_wrong, SUM(answer_correct AND first_wrong IS NOT NULL) AS right_answer_wrong_step "
        "FROM steps GROUP BY model, task, strategy ORDER BY task, model, strategy")


def record_footprint(store: Store, subject: Any, measure_memory: bool) -> None:
    """Parameters, disk size, RSS and latency of one evaluated model (variant)."""
    from slmkit.eval.compress import disk_bytes, measure_rss

    timing = store.query("SELECT AVG(seconds) AS s, SUM(n_tokens) AS tok, SUM(seconds) AS total FROM "
                         "generations WHERE model = ?", (subject.name,))[0]
    row: dict[str, Any] = {"model": subject.name, "base": subject.path or subject.name, "variant": subject.variant,
                           "ms_per_sample": 1000 * (timing["s"] or 0.0),
                           "tokens_per_s": (timing["tok"] or 0) / timing["total"] if timing["total"] else None}
    notes = []
    if subject.model is not None:
        from slmkit.models.build import count_parameters

        row["params"] = subject.params or count_parameters(subject.model)
        row["disk_mb"] = disk_bytes(subject.model) / 2 ** 20
        if subject.variant == "int4":
            notes.append("packed int4 weights, groups of 32 (aten int4 CPU kernel)")
        if subject.variant == "pruned":
            notes.append("50% magnitude-pruned, stored dense")
    if measure_memory and subject.path:
        row["rss_mb"] = measure_rss(subject.path, subject.variant)["rss_mb"]
    row["note"] = "; ".join(notes) or None
    store.put_row("footprint", row)


def judge_agreement(store: Store, labels_path: str, task: str, judges: dict[str, Any]) -> None:
    """Agreement of each evaluator (strict, flexible, every judge) with human correctness labels."""
    from slmkit.artifacts import read_jsonl
    from slmkit.errors import DataError
    from slmkit.eval.harness import score
    from slmkit.eval.taskspec import load_spec

    labels = read_jsonl(labels_path)
    for i, row in enumerate(labels):
        missing = [k for k in ("question", "response", "gold", "human") if k not in row]
        if missing:
            raise DataError(f"{labels_path} line {i + 1}: field '{missing[0]}' is missing")
    spec = load_spec(task)
    items = [{"id": str(i), "question": r["question"], "answer": str(r["gold"])} for i, r in enumerate(labels)]
    rows = [{"item_id": str(i), "output": r["response"]} for i, r in enumerate(labels)]
    human = [int(bool(r["human"])) for r in labels]
    methods = ["strict", "flexible"] + [f"judge:{k}" for k in judges]
    for method in methods:
        preds, summary = score(method, rows, items, spec, judges)
        name = method if not method.startswith("judge:") else judges[method[6:]].name
        stats = agreement([int(bool(p["correct"])) for p in preds], human)
        store.put_row("agreement", {"judge": name, **stats, "parse_failures": summary["parse_failures"]})


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def accuracy_tables(rows: list[dict[str, Any]]) -> str:
    """One markdown table per task × method: models down, strategies across."""
    parts = []
    for task in sorted({r["task"] for r in rows}):
        for method in sorted({r["method"] for r in rows if r["task"] == task}):
            sel = [r for r in rows if r["task"] == task and r["method"] == method]
            strategies = list(dict.fromkeys(r["strategy"] for r in sel))
            body = []
            for model in sorted({r["model"] for r in sel}):
                cells = {r["strategy"]: cell_text(r) for r in sel if r["model"] == model}
                body.append([model] + [cells.get(s, "—") for s in strategies])
            parts.append(f"**{task} — {method}** ({sel[0]['items']} items, {sel[0]['runs']} runs)\n\n"
                         + _md_table(["model", *strategies], body))
    return "\n\n".join(parts)


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def section(store: Store, rows: list[dict[str, Any]]) -> str:
    """The markdown report section: accuracy, robustness, steps, agreement, footprint."""
    out = ["Accuracy per task and method: mean ± sd over runs, [95% CI], pf = parse-failure rate. "
           "★ best model in the column; ≈ within noise of the best (|Δ| < 1.96·√(se²+se²), se² = sd²/runs "
           "+ p(1−p)/items), so not a real difference.", accuracy_tables(rows)]
    rob = robustness(store)
    if rob:
        out += ["### Robustness (Δ accuracy on the same items, GSM-Plus kinds)", _md_table(
            ["model", "task", "kind", "strategy", "method", "items", "original", "perturbed", "Δ"],
            [[r["model"], r["task"], r["kind"], r["strategy"], r["method"], str(r["items"]), _fmt(r["original"]),
              _fmt(r["perturbed"]), f"{r['delta']:+.3f}"] for r in rob])]
    steps = [s for s in step_table(store) if s["with_steps"]]
    if steps:
        out += ["### Step checking (a op b = c claims)", _md_table(
            ["model", "task", "strategy", "outputs", "with steps", "step accuracy", "with a wrong step",
             "mean first wrong step", "right answer, wrong step"],
            [[s["model"], s["task"], s["strategy"], str(s["outputs"]), str(s["with_steps"]),
              _fmt(s["step_accuracy"]), _fmt(s["wrong_step_share"]), _fmt(s["mean_first_wrong"], 2),
              str(s["right_answer_wrong_step"])] for s in steps])]
    agree = store.query("SELECT * FROM agreement ORDER BY judge")
    if agree:
        out += ["### Evaluators vs human labels", _md_table(
            ["evaluator", "n", "agreement", "Cohen's κ [95% CI]", "Spearman ρ [95% CI]", "parse failures"],
            [[a["judge"], str(a["n"]), _fmt(a["agreement"]),
              f"{_fmt(a['kappa'])} [{_fmt(a['kappa_low'])}, {_fmt(a['kappa_high'])}]",
              f"{_fmt(a['spearman'])} [{_fmt(a['spearman_low'])}, {_fmt(a['spearman_high'])}]",
              str(a["parse_failures"])] for a in agree])]
    foot = store.query("SELECT * FROM footprint ORDER BY model")
    if foot:
        out += ["### Footprint", _md_table(
            ["model", "variant", "params", "disk MB", "RSS MB", "ms/sample", "tokens/s", "note"],
            [[f["model"], f["variant"], _fmt(f["params"]), _fmt(f["disk_mb"], 2), _fmt(f["rss_mb"], 1),
              _fmt(f["ms_per_sample"], 1), _fmt(f["tokens_per_s"], 1), f["note"] or ""] for f in foot])]
    return "\n\n".join(out) + "\n"


def footprint_plot(store: Store, rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy (flexible, mean over original tasks and strategies) against disk size per model variant."""
    foot = {f["model"]: f for f in store.query("SELECT * FROM footprint") if f["disk_mb"]}
    acc: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == "flexible" and "~" not in r["task"] and r["model"] in foot:
            acc[r["model"]].append(r["mean"])
    if not acc:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for model, values in sorted(acc.items()):
        x, y = foot[model]["disk_mb"], sum(values) / len(values)
        ax.scatter([x], [y])
        ax.annotate(model, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xlabel="weights on disk (MB)", ylabel="accuracy (flexible, mean over tasks × strategies)",
           title="accuracy vs footprint")
    ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_outputs(store: Store, run_dir: Path, tasks: list[str]) -> dict[str, Any]:
    """summary.json, report_section.md and the footprint plot; returns the summary."""
    from slmkit.artifacts import atomic_write_json, atomic_write_text

    rows = [r for r in aggregate(store) if r["task"] in tasks]
    per_model: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if "~" not in r["task"]:
            per_model[f"{r['model']}/{r['method']}"].append(r["mean"])
    headline = {"cells": len(rows), **{f"{k} (mean accuracy)": round(sum(v) / len(v), 4)
                                       for k, v in per_model.items()}}
    summary = {"headline": headline, "rows": rows, "robustness": robustness(store), "steps": step_table(store),
               "agreement": store.query("SELECT * FROM agreement"), "footprint": store.query("SELECT * FROM footprint")}
    atomic_write_json(run_dir / "summary.json", summary)
    atomic_write_text(run_dir / "report_section.md", section(store, rows))
    footprint_plot(store, rows, run_dir / "accuracy_vs_footprint.png")
    return summary
