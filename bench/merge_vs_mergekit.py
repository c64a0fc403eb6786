"""Merging against mergekit, and MediPhi's expert -> merge pipeline, on this machine (issue 6).

1. Parity: every method slmkit shares with mergekit, on tiny Llama models, max |slmkit - mergekit| over all
   tensors (target <= 1e-5; DARE with one seed in both).
2. Cost: TIES of three ~100M-parameter models (a base and two fine-tune-like variants, float32), slmkit and
   mergekit each in its own subprocess, alternating, best of ``--repeats``: wall time and peak RSS, targets
   slmkit <= mergekit.
3. Quality: the ``mediphi`` recipe at CPU scale (general base; three pre-instruction-tuned experts; SLERP at
   t = 0.5 into the base; BreadCrumbs): the merged model must keep >= 90% of each expert's in-domain gain
   over the base, and stay within 2 points of the base on general data.

Run: ``flock /tmp/slmkit-bench.lock python bench/merge_vs_mergekit.py`` (about 30-45 min on 2 CPU cores;
``--threads`` sets torch's threads in this process and both tools' subprocesses alike).
Writes bench/results/merge_vs_mergekit.json and keeps its work folder only with ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import Record, check, info, report  # noqa: E402

# The recipe at CPU scale: a ~0.8M-parameter decoder, easy domains a tiny model learns in minutes.
QUALITY_OVERRIDES = [
    "base.preset=pico",
    "base.model_overrides={hidden_size: 128, num_hidden_layers: 4, num_attention_heads: 4, "
    "num_key_value_heads: 2, intermediate_size: 384}",
    "base.steps=800", "base.lr=3e-3", "base.checkpoint_every=0", "base.max_length=96",
    *[f"expert_{d}.{k}" for d in ("math", "sorting", "units") for k in ("steps=300", "max_length=96")],
    "aligned.steps=50", "aligned.max_length=96", "dpo.max_length=96", "dpo.max_new_tokens=64",
    "evaluation.max_new_tokens=64", "general.n_test=200",
]
DOMAINS = ("math", "sorting", "units")

MEASURE = """
import json, resource, subprocess, sys, time
start = time.time()
code = subprocess.run(sys.argv[1:]).returncode
print(json.dumps({"rc": code, "wall_s": time.time() - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""


def parity(work: Path) -> list[Record]:
    """Max abs difference per method between slmkit and mergekit on the same tiny models."""
    import yaml

    from slmkit.cli import main
    from slmkit.merge.reference import PARITY_CASES, case_config, max_diffs, parity_models, run_mergekit

    models = parity_models(work / "parity_models")
    records = []
    for method, case in PARITY_CASES.items():
        conf = case_config(method, case, models)
        (work / f"{method}.yaml").write_text(yaml.safe_dump(conf))
        run_mergekit(conf, work / f"{method}_mergekit", seed=42)
        main(["merge", str(work / f"{method}.yaml"), str(work / f"{method}_slmkit"), "--seed", "42"])
        worst = max(max_diffs(work / f"{method}_mergekit", work / f"{method}_slmkit").values())
        records.append(check(f"parity {method}: max |slmkit - mergekit|", worst, "<=", 1e-5))
    return records


def big_models(work: Path) -> dict[str, Path]:
    """A ~100M-parameter decoder (the 'base' preset, 32k vocabulary) and two perturbed copies."""
    import torch

    from slmkit.models.build import build, count_parameters

    model = build("decoder", "base", vocab_size=32000, seed=0)
    paths = {"base": work / "big_base"}
    model.save_pretrained(paths["base"])
    original = {k: v.clone() for k, v in model.state_dict().items()}
    for i in (1, 2):
        torch.manual_seed(i)
        model.load_state_dict({k: v + 0.01 * torch.randn_like(v) for k, v in original.items()})
        paths[f"ft{i}"] = work / f"big_ft{i}"
        model.save_pretrained(paths[f"ft{i}"])
    paths["parameters"] = count_parameters(model)
    return paths


def measure(command: list[str]) -> dict:
    out = subprocess.run([sys.executable, "-c", MEASURE, *command], capture_output=True, text=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{command[:3]} failed: {out.stderr[-2000:]}")
    return result


def cost(work: Path, repeats: int) -> list[Record]:
    """Wall time and peak RSS of the same TIES merge by slmkit and by mergekit, each in a subprocess."""
    import yaml

    models = big_models(work)
    conf = {"merge_method": "ties", "base_model": str(models["base"]), "dtype": "float32",
            "models": [{"model": str(models[f"ft{i}"]), "parameters": {"weight": 0.5, "density": 0.5}}
                       for i in (1, 2)]}
    (work / "big.yaml").write_text(yaml.safe_dump(conf))
    commands = {
        "slmkit": [sys.executable, "-m", "slmkit", "merge", str(work / "big.yaml"), str(work / "big_slmkit")],
        "mergekit": [str(Path(sys.executable).parent / "mergekit-yaml"), str(work / "big.yaml"),
                     str(work / "big_mergekit"), "--no-copy-tokenizer", "--quiet", "--random-seed", "0"],
    }
    runs: dict[str, list[dict]] = {"slmkit": [], "mergekit": []}
    for i in range(repeats):
        for tool in (("slmkit", "mergekit") if i % 2 == 0 else ("mergekit", "slmkit")):
            runs[tool].append(measure(commands[tool]))
    best = {tool: {k: min(r[k] for r in rs) for k in ("wall_s", "peak_rss_mb")} for tool, rs in runs.items()}
    from slmkit.merge.reference import max_diffs

    diff = max(max_diffs(work / "big_mergekit", work / "big_slmkit").values())
    return [
        info("cost: parameters per model (M)", round(models["parameters"] / 1e6, 1)),
        info("cost: slmkit wall (s)", round(best["slmkit"]["wall_s"], 2)),
        info("cost: mergekit wall (s)", round(best["mergekit"]["wall_s"], 2)),
        check("cost: wall time slmkit / mergekit", best["slmkit"]["wall_s"] / best["mergekit"]["wall_s"], "<=", 1.0),
        info("cost: slmkit peak RSS (MB)", round(best["slmkit"]["peak_rss_mb"])),
        info("cost: mergekit peak RSS (MB)", round(best["mergekit"]["peak_rss_mb"])),
        check("cost: peak RSS slmkit / mergekit", best["slmkit"]["peak_rss_mb"] / best["mergekit"]["peak_rss_mb"],
              "<=", 1.0),
        check("cost: 100M merge max |slmkit - mergekit|", diff, "<=", 1e-5),
    ]


def quality(work: Path, runs_dir: Path | None) -> list[Record]:
    """Run the mediphi recipe at CPU scale and compare the merged model with the base and the experts."""
    from slmkit.cli import recipe_path
    from slmkit.recipe import load_plan, run_plan

    runs = runs_dir or work / "runs"
    plan = load_plan(recipe_path("mediphi"), QUALITY_OVERRIDES, runs)
    results = run_plan(plan)
    scores_path = Path(results["evaluation"]["outputs"]["scores"])
    scores = json.loads(scores_path.read_text())
    print((scores_path.parent / "report_section.md").read_text())
    acc = {m: {t: 100 * s["accuracy"] for t, s in row.items()} for m, row in scores.items()}
    # each stage's own recorded run time, so a rerun that reuses finished stages reports what they cost
    minutes = sum(r.get("wall_time_s", 0.0) for r in results.values()) / 60
    records = [info("quality: pipeline wall time (min, sum of the stages' runs)", round(minutes, 1))]
    for domain in DOMAINS:
        base, expert, merged = acc["base"][domain], acc[f"expert_{domain}"][domain], acc["merged"][domain]
        records.append(info(f"quality: {domain} base / expert / merged (%)", f"{base:.1f}/{expert:.1f}/{merged:.1f}"))
        gain = expert - base
        # an expert no better than the base in its own domain has no gain to keep: NaN, missed (null in JSON)
        retention = round((merged - base) / gain, 3) if gain > 0 else float("nan")
        records.append(check(f"quality: {domain} share of the expert's gain kept", retention, ">=", 0.9))
    drift = acc["merged"]["general"] - acc["base"]["general"]
    records.append(info("quality: general base / merged / aligned (SFT) / DPO (%)",
                        "/".join(f"{acc[m]['general']:.1f}" for m in ("base", "merged", "aligned", "dpo"))))
    records.append(check("quality: merged - base on general (points)", round(drift, 2), ">=", -2.0))
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads, here and in both tools' subprocesses (default 1: on a shared, "
                             "oversubscribed machine two spinning OpenMP threads per process run ~10x slower)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per tool for the cost comparison")
    parser.add_argument("--runs-dir", type=Path, help="keep the recipe runs here (a rerun reuses finished stages)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--skip", nargs="*", default=[], choices=["parity", "cost", "quality"])
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="slmkit-merge-bench-"))
    records: list[Record] = []
    try:
        if "parity" not in args.skip:
            records += parity(work)
        if "cost" not in args.skip:
            records += cost(work, args.repeats)
        if "quality" not in args.skip:
            records += quality(work, args.runs_dir)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report("merge_vs_mergekit", records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
