"""The ``guard_eval`` stage: the evaluation report of a guard (any kind) on ``guard_data`` splits.

Figures (positive class = should not be answered; see ``metrics``):

- in-distribution test split (plain prompts of the training sources): accuracy, precision, recall, F1,
  TPR, TNR, FPR, FNR; the same for its jailbreak-wrapped prompts (templates unseen in training);
- every held-out source on its own: detection for harmful sources, over-refusal for benign ones;
- jailbreak-wrapped harmful questions whose source was held out, and wrapped benign questions (test and
  held-out splits, unseen templates): the template must not decide;
- XSTest safe prompts (over-refusal; evaluation-only set) and XSTest unsafe prompts (detection);
- latency at batch 1 (p50/p95, end to end: tokenize, window, run, max) for prompts of at most 32 tokens
  and of 128 tokens; model size on disk;
- optionally the quantization safety check (``guarded.quant_safety_check``) on held-out harmful prompts.

Writes ``evaluation.json``, ``report_section.md``, ``scores.jsonl`` (every row's score) and
``scores.png`` (score distributions with the threshold).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.errors import ConfigError
from slmkit.guard.metrics import binary_metrics, flag_rate, percentile

OUTPUTS = {"evaluation": "evaluation.json"}
EVAL_SPLITS = ("test", "heldout", "xstest")


@dataclass(frozen=True, kw_only=True)
class Config:
    guard: str | None = field(None, doc="guard folder (any kind: encoder, onnx, ngram)", input=True)
    guard_data: str | None = field(None, doc="folder written by guard_data", input=True)
    threads: int = field(0, doc="CPU threads for the guard (0: the runtime's default, all cores)")
    latency_prompts: int = field(200, doc="prompts timed at batch 1 for each length (0: skip latency)")
    safety_model: str | None = field(None, doc="model folder for the quantization safety check (unset: skip)")
    safety_prompts: int = field(100, doc="held-out harmful prompts used by the safety check")
    safety_max_new_tokens: int = field(32, doc="tokens generated per prompt in the safety check")
    seed: int = field(0, doc="seed for sampling prompts")


def score_splits(guard: Any, folder: str) -> dict[str, list[dict[str, Any]]]:
    """Every evaluation row with its label (1 = refuse) and the guard's score."""
    from slmkit.guard.data import LABELS, read_split

    out = {}
    for split in EVAL_SPLITS:
        rows = read_split(folder, split)
        scores = guard.score([r["prompt"] for r in rows])
        out[split] = [{"source": r["meta"].get("source", "?"), "category": r["meta"].get("category", ""),
                       "wrapped": bool(r["meta"].get("wrapped")),
                       "label": LABELS[r["answer"]], "score": s, "prompt": r["prompt"]} for r, s in zip(rows, scores)]
    return out


def _metrics(rows: list[dict], threshold: float) -> dict[str, float]:
    return binary_metrics([r["label"] for r in rows], [r["score"] for r in rows], threshold)


def _rate(rows: list[dict], threshold: float) -> dict[str, Any]:
    return {"rate": flag_rate([r["score"] for r in rows], threshold), "n": len(rows)}


def summarize(scored: dict[str, list[dict]], threshold: float) -> dict[str, Any]:
    """The report's numbers from scored rows (see the module docstring)."""
    test, held, xs = scored["test"], scored["heldout"], scored["xstest"]
    plain = lambda rows: [r for r in rows if not r["wrapped"]]  # noqa: E731
    wrapped = lambda rows: [r for r in rows if r["wrapped"]]  # noqa: E731
    by_source: dict[str, list[dict]] = defaultdict(list)
    for r in plain(held):
        by_source[r["source"]].append(r)
    test_sources: dict[str, list[dict]] = defaultdict(list)
    for r in plain(test):
        test_sources[r["source"]].append(r)
    wrapped_benign = [r for r in wrapped(test) + wrapped(held) if not r["label"]]
    xs_types: dict[str, list[dict]] = defaultdict(list)
    for r in xs:
        xs_types[r["category"]].append(r)
    return {
        "threshold": threshold,
        "in_distribution": _metrics(plain(test), threshold),
        "in_distribution_wrapped": _metrics(wrapped(test), threshold),
        "heldout_sources": {s: {"label": "refuse" if rows[0]["label"] else "comply", **_rate(rows, threshold)}
                            for s, rows in sorted(by_source.items())},
        "heldout_harmful": _rate([r for r in plain(held) if r["label"]], threshold),
        "heldout_benign": _rate([r for r in plain(held) if not r["label"]], threshold),
        "wrapped_heldout_harmful": _rate([r for r in wrapped(held) if r["label"]], threshold),
        "wrapped_benign": _rate(wrapped_benign, threshold),
        "xstest_safe": _rate([r for r in xs if not r["label"]], threshold),
        "xstest_unsafe": _rate([r for r in xs if r["label"]], threshold),
        "xstest_types": {t: {"label": "refuse" if rows[0]["label"] else "comply", **_rate(rows, threshold)}
                         for t, rows in sorted(xs_types.items())},
        "test_sources": {s: {"label": "refuse" if rows[0]["label"] else "comply", **_rate(rows, threshold)}
                         for s, rows in sorted(test_sources.items())},
    }


def length_prompts(guard: Any, texts: list[str], tokens: int, n: int, seed: int) -> list[str]:
    """Prompts of about ``tokens`` guard tokens (cut from real prompts), or of at most 32 if ``tokens`` <= 32."""
    rng = random.Random(seed)
    windows = getattr(guard, "windows", None)
    if tokens <= 32:
        if windows is None:
            pool = [t for t in texts if len(t.split()) <= 24]
        else:
            pool = [t for t, e in zip(texts, windows.encode(texts)) if len(e.ids) + 2 <= 32]
        return rng.sample(pool, min(n, len(pool)))
    longer = [t for t in texts if len(t.split()) >= tokens]
    picked = rng.sample(longer, min(n, len(longer)))
    if windows is None:
        return [" ".join(t.split()[:int(tokens * 0.75)]) for t in picked]
    return [windows.tokenizer.decode(e.ids[:tokens - 2]) for e in windows.encode(picked)]


def latency(guard: Any, prompts: list[str], warmup: int = 10) -> dict[str, float]:
    """Batch-1 latency of ``guard.score([prompt])`` in milliseconds: p50, p95, mean."""
    for prompt in prompts[:warmup]:
        guard.score([prompt])
    times = []
    for prompt in prompts:
        start = time.perf_counter()
        guard.score([prompt])
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95),
            "mean_ms": sum(times) / max(1, len(times)), "n": len(times)}


def model_size(folder: str | Path, meta: dict[str, Any]) -> dict[str, float]:
    """Size on disk (MB) of the guard's weights as it runs (the shipped file for ONNX)."""
    folder = Path(folder)
    if meta["kind"] == "onnx":
        return {p: (folder / f).stat().st_size / 1e6 for p, f in meta["files"].items()}
    files = [p for p in folder.rglob("*") if p.suffix in (".safetensors", ".onnx")]
    return {meta["kind"]: sum(p.stat().st_size for p in files) / 1e6}


def evaluate(cfg: Config) -> tuple[dict[str, Any], dict[str, list[dict]]]:
    """All numbers of the report, and the scored rows."""
    from slmkit.guard import load_guard, read_meta

    meta = read_meta(cfg.guard)
    guard = load_guard(cfg.guard, threads=cfg.threads or None)
    scored = score_splits(guard, cfg.guard_data)
    result = {"guard": str(cfg.guard), "kind": meta["kind"], "shipped": meta.get("shipped"),
              **summarize(scored, guard.threshold), "size_mb": model_size(cfg.guard, meta)}
    summary = Path(cfg.guard_data) / "summary.json"
    if summary.is_file():
        from slmkit.artifacts import read_json

        result["licences"] = read_json(summary).get("licences", {})
    if cfg.latency_prompts:
        texts = [r["prompt"] for split in scored.values() for r in split]
        result["latency"] = {f"{n}_tokens": latency(guard, length_prompts(guard, texts, n, cfg.latency_prompts,
                                                                           cfg.seed)) for n in (32, 128)}
    if cfg.safety_model:
        from slmkit.guard.guarded import quant_safety_check

        harmful = [r["prompt"] for r in scored["heldout"] if r["label"]]
        prompts = random.Random(cfg.seed).sample(harmful, min(cfg.safety_prompts, len(harmful)))
        result["quant_safety"] = quant_safety_check(cfg.safety_model, guard, prompts, cfg.safety_max_new_tokens)
    return result, scored


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.artifacts import atomic_write_json, atomic_write_text, write_jsonl
    from slmkit.guard.report import markdown, plot_scores

    if not cfg.guard or not cfg.guard_data:
        raise ConfigError("guard_eval: guard and guard_data must be set (wire them with from:)")
    result, scored = evaluate(cfg)
    atomic_write_json(run_dir / OUTPUTS["evaluation"], result)
    write_jsonl(run_dir / "scores.jsonl", [{"split": s, **{k: v for k, v in r.items() if k != "prompt"}}
                                           for s, rows in scored.items() for r in rows])
    atomic_write_text(run_dir / "report_section.md", markdown(result))
    plot_scores(scored, result["threshold"], run_dir / "scores.png")
    ind = result["in_distribution"]
    metrics = {"accuracy": ind["accuracy"], "fpr": ind["fpr"], "fnr": ind["fnr"], "f1": ind["f1"],
               "heldout_harmful_detection": result["heldout_harmful"]["rate"],
               "wrapped_heldout_harmful_detection": result["wrapped_heldout_harmful"]["rate"],
               "wrapped_benign_flagged": result["wrapped_benign"]["rate"],
               "xstest_safe_refused": result["xstest_safe"]["rate"],
               "heldout_benign_refused": result["heldout_benign"]["rate"]}
    if "latency" in result:
        metrics |= {f"p50_ms_{k}": v["p50_ms"] for k, v in result["latency"].items()}
    return Result(metrics=metrics)
