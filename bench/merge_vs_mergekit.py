"""Merging against mergekit, and MediPhi's expert -> merge pipeline, on this machine (issue 6).

1. Parity: every method slmkit shares with mergekit, on tiny Llama models, max |slmkit - mergekit| over all
   tensors (target <= 1e-5; DARE with one seed in both).
2. Cost: TIES of three ~100M-parameter models (a base and two fine-tune-like variants, float32), slmkit and
   mergekit each in its own subprocess, alternating, best of ``--repeats``: wall time and peak RSS, targets
   slmkit <= mergekit.
3. Quality: the ``mediphi`` recipe at CPU scale (general base; three pre-instruction-tuned experts; SLERP at
   t = 0.5 into the base; BreadCrumbs): the merged model must keep >= 90% of each expert's in-domain gain
   over the base, and stay within 2 points of the base on general data. Run for each of ``--seeds`` (the
   training stages' seed; data fixed): the targets are checked on the accuracies' means over the seeds
   (share kept = (merged - base) / (expert - base) of the means), with mean ± sd and per-seed figures beside,
   since these tiny models' scores move by many points with the seed and the CPU.

Run: ``flock /tmp/slmkit-bench.lock python bench/merge_vs_mergekit.py`` (about 35 min on 2 CPU cores with
three seeds, ~8 min each; ``--threads`` sets torch's threads in this process and both tools' subprocesses).
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

from common import Record, check, info, mean_sd, report  # noqa: E402

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
SEEDED = ("base", "expert_math", "expert_sorting", "expert_units", "aligned", "dpo")  # the training stages

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


def quality(work: Path, runs_dir: Path | None, seeds: list[int]) -> list[Record]:
    """Run the mediphi recipe at CPU scale once per seed; compare the merged model with the base and experts."""
    runs = runs_dir or work / "runs"
    acc, minutes = [], 0.0
    for seed in seeds:
        scores, stage_minutes = pipeline_scores(runs / f"seed{seed}", seed)
        acc.append(scores)
        minutes += stage_minutes
    records = [info("quality: pipeline wall time (min, sum of the stages' runs over all seeds)", round(minutes, 1)),
               info("quality: training seeds", " ".join(map(str, seeds)))]
    for domain in DOMAINS:
        records += kept_share(domain, [{m: a[m][domain] for m in ("base", f"expert_{domain}", "merged")} for a in acc])
    drifts = [a["merged"]["general"] - a["base"]["general"] for a in acc]
    for model in ("base", "merged", "aligned", "dpo"):
        mean, sd = mean_sd([a[model]["general"] for a in acc])
        records.append(info(f"quality: general {model} (%, mean ± sd)", f"{mean:.1f} ± {sd:.1f}"))
    mean, sd = mean_sd(drifts)
    records.append(info("quality: merged - base on general, per seed", " ".join(f"{d:+.1f}" for d in drifts)))
    records.append(info("quality: merged - base on general, mean ± sd", f"{mean:+.1f} ± {sd:.1f}"))
    records.append(check("quality: merged - base on general (points, mean)", round(mean, 2), ">=", -2.0))
    return records


def pipeline_scores(runs: Path, seed: int) -> tuple[dict[str, dict[str, float]], float]:
    """Exact match % per model and test set for one seed, and the minutes its stages ran (reused ones count)."""
    from slmkit.cli import recipe_path
    from slmkit.recipe import load_plan, run_plan

    overrides = QUALITY_OVERRIDES + [f"{stage}.seed={seed}" for stage in SEEDED]
    results = run_plan(load_plan(recipe_path("mediphi"), overrides, runs))
    scores_path = Path(results["evaluation"]["outputs"]["scores"])
    print(f"seed {seed}:\n" + (scores_path.parent / "report_section.md").read_text())
    scores = json.loads(scores_path.read_text())
    # each stage's own recorded run time, so a rerun that reuses finished stages reports what they cost
    minutes = sum(r.get("wall_time_s", 0.0) for r in results.values()) / 60
    return {m: {t: 100 * s["accuracy"] for t, s in row.items()} for m, row in scores.items()}, minutes


def kept_share(domain: str, per_seed: list[dict[str, float]]) -> list[Record]:
    """Share of the expert's in-domain gain the merged model keeps: checked on the seed means, shown per seed."""
    expert = f"expert_{domain}"
    means = {m: mean_sd([s[m] for s in per_seed]) for m in ("base", expert, "merged")}
    shown = "/".join(f"{means[m][0]:.1f} ± {means[m][1]:.1f}" for m in ("base", expert, "merged"))
    per = " ".join("/".join(f"{s[m]:.1f}" for m in ("base", expert, "merged")) for s in per_seed)
    return [info(f"quality: {domain} base / expert / merged (%, mean ± sd)", shown),
            info(f"quality: {domain} base/expert/merged per seed", per),
            check(f"quality: {domain} share of the expert's gain kept (seed means)",
                  share(means["base"][0], means[expert][0], means["merged"][0]), ">=", 0.9)]


def share(base: float, expert: float, merged: float) -> float:
    """(merged - base) / (expert - base); an expert no better than its base has no gain to keep: NaN (missed)."""
    return round((merged - base) / (expert - base), 3) if expert > base else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch/OpenMP threads, here and in both tools' subprocesses (default 1: on a shared, "
                             "oversubscribed machine two spinning OpenMP threads per process run ~10x slower)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per tool for the cost comparison")
    parser.add_argument("--runs-dir", type=Path, help="keep the recipe runs here (a rerun reuses finished stages)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds of the quality run")
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
            records += quality(work, args.runs_dir, args.seeds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report("merge_vs_mergekit", records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
