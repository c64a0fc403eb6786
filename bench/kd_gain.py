"""Bench for knowledge distillation (issue 4): does a decoder-only teacher make an encoder–decoder student
better than cross-entropy training alone, and is the offline (cached top-k) teacher faster than online?

It runs the distillation part of the shipped recipe ``return_of_the_encoder`` (built-in math data → BPE tokenizer → a larger
decoder-only teacher → the same encoder–decoder student trained with CE only and with KD, equal rows and
steps → exact match on held-out problems) once per seed, through the normal recipe runner, so the data, the
tokenizer and the teacher are trained once and reused by every seed (and by a rerun). Then two short KD
runs of the same student, one with the teacher online and one reading the cache, give training tokens/s
with the teacher's cost included.

Figures: exact match of the CE and KD students (mean ± sd over the seeds, every seed listed), the gain in
points (target ≥ 6, the paper's "up to 6 points"), tokens/s online vs offline (target: offline faster from
the second epoch on, i.e. once the cache exists) and the epoch times of both modes.
Run: ``flock /tmp/slmkit-bench.lock python bench/kd_gain.py`` (writes ``bench/results/kd_gain.json``).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import check, info, mean_sd, report  # noqa: E402

SHARED = ("data", "tokenizer", "teacher", "teacher_eval")  # stages run once for every seed
SPEED_STEPS = 40  # steps of each side of the online/offline speed comparison


def seeded_recipe(base: dict, seeds: list[int]) -> dict:
    """The shipped recipe with its student stages repeated per seed, plus the online/offline speed pair."""
    shared = [s for s in base["stages"] if s.get("name", s["stage"]) in SHARED]
    by_name = {s["name"]: s for s in base["stages"] if s.get("name", "").startswith("student")}
    stages = list(shared)
    for seed in seeds:
        for name in ("student_ce", "student_ce_eval", "student_kd", "student_kd_eval"):
            stage = copy.deepcopy(by_name[name])
            stage["name"] = f"{name}_s{seed}"
            if "seed" in stage or stage["stage"] in ("sft", "distill"):
                stage["seed"] = seed
            stage["from"] = [f"{src}_s{seed}" if src.startswith("student") else src for src in stage["from"]]
            stages.append(stage)
    for mode in ("online", "offline"):
        stage = copy.deepcopy(by_name["student_kd"])
        stage.update(name=f"speed_{mode}", teacher_mode=mode, steps=SPEED_STEPS, log_every=SPEED_STEPS)
        stages.append(stage)
    return {**base, "stages": stages}


def percent_mean_sd(values: list[float]) -> str:
    mean, sd = mean_sd(values)
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def records(results: dict, seeds: list[int], recipe: dict, tokens_per_epoch: int) -> list:
    """Bench records from the stage results."""
    ce = [results[f"student_ce_eval_s{s}"]["metrics"]["accuracy"] for s in seeds]
    kd = [results[f"student_kd_eval_s{s}"]["metrics"]["accuracy"] for s in seeds]
    gain = 100 * (statistics.mean(kd) - statistics.mean(ce))
    online = results["speed_online"]["metrics"]
    offline = results["speed_offline"]["metrics"]
    kd_stage = next(s for s in recipe["stages"] if s.get("name") == "student_kd_s0")
    teacher = results["teacher"]["metrics"]
    out = [
        info("teacher: parameters (decoder-only)", teacher["parameters"]),
        info("student: parameters (encoder–decoder)", results[f"student_kd_s{seeds[0]}"]["metrics"]["parameters"]),
        info("teacher exact match %", round(100 * results["teacher_eval"]["metrics"]["accuracy"], 1)),
        info("student rows / steps / batch (both students)",
             f"{results[f'student_kd_s{seeds[0]}']['metrics']['train_rows']} / {kd_stage['steps']} / "
             f"{kd_stage['batch_size']}"),
        info("CE-only student exact match % (mean ± sd)", percent_mean_sd(ce)),
        info("KD student exact match % (mean ± sd)", percent_mean_sd(kd)),
        info("per seed CE → KD %", ", ".join(f"s{s}: {100 * a:.1f} → {100 * b:.1f}" for s, a, b in zip(seeds, ce, kd))),
        check("KD gain over CE-only, points (mean of seeds)", round(gain, 2), ">=", 6.0),
        info("CE-only training tokens/s", round(results[f"student_ce_s{seeds[0]}"]["metrics"]["tokens_per_s"])),
        info("KD online training tokens/s (teacher forward included)", round(online["tokens_per_s"])),
        info("KD offline training tokens/s (cached top-k)", round(offline["tokens_per_s"])),
        check("offline / online tokens/s from epoch 2", round(offline["tokens_per_s"] / online["tokens_per_s"], 2),
              ">", 1.0),
        info("offline cache build s (once)", round(offline["offline_cache_s"], 1)),
        info("epoch s: online / offline epoch 1 (with cache) / offline epoch ≥ 2",
             f"{tokens_per_epoch / online['tokens_per_s']:.0f} / "
             f"{offline['offline_cache_s'] + tokens_per_epoch / offline['tokens_per_s']:.0f} / "
             f"{tokens_per_epoch / offline['tokens_per_s']:.0f}"),
    ]
    return out


def epoch_tokens(plan, stage_name: str) -> int:
    """Tokens the loop counts in one pass over a student's rows: prompt (encoder) + target (decoder)."""
    from slmkit.data.loaders import read_rows
    from slmkit.models.load import load_tokenizer
    from slmkit.train.sft import encode_rows

    cfg = next(s.config for s in plan.stages if s.name == stage_name)
    rows = read_rows(cfg.train_file)
    rows = rows[:cfg.max_train_rows] if cfg.max_train_rows else rows
    pairs = encode_rows(rows, load_tokenizer(cfg.tokenizer), cfg.prompt_format)
    return sum(min(len(p["prompt_ids"]), cfg.max_length) + min(len(p["completion_ids"]), cfg.max_length)
               for p in pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--runs-dir", default="runs/bench", help="run folders (the teacher is reused from here)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SLMKIT_QUIET", "1")
    import torch

    from slmkit.cli import recipe_path
    from slmkit.config import load_yaml
    from slmkit.recipe import resolve, run_plan

    torch.set_num_threads(args.threads)
    began = time.time()
    base, lines = load_yaml(recipe_path("return_of_the_encoder"))
    seeds = list(range(args.seeds))
    recipe = seeded_recipe(base, seeds)
    plan = resolve(recipe, lines, "return_of_the_encoder (kd bench)", [], Path(args.runs_dir))
    results = run_plan(plan, echo=lambda text: print(text, flush=True))
    out = records(results, seeds, recipe, epoch_tokens(plan, "speed_offline"))
    out.append(info("bench wall time s", round(time.time() - began)))
    report("kd_gain", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
