"""Issue 7 benchmark: slmkit's evaluation harness beside lm-evaluation-harness 0.4.13, on this machine.

1. Throughput: generation-based GSM8K evaluation (5-shot CoT prompts, greedy, the same max tokens and stop
   string) of one tiny model, end to end — slmkit's harness (prompts, prefix-cached generation, strict +
   flexible scoring, results store) vs lm-eval's HF backend (``HFLM.generate_until`` on the same prompt
   strings and batch size, then its gsm8k-cot filters). Target: ≥ 2× samples/s; the generations must be
   the same text.
2. Extraction parity on those real generations: slmkit's strict/flexible extractors vs lm-eval's
   ``strict-match``/``flexible-extract`` filters (100% agreement).
3. Grid: 3 tiny models × 5 tasks × 2 strategies × 3 seeds through ``slmkit eval`` in ≤ 15 minutes, its
   report showing mean ± sd.

The tiny models are trained here first (SFT on GSM8K train, built-in math and sorting; cached under
``$SLMKIT_BENCH_CACHE``); training time is not part of any figure. Both sides run in one process with
one intra-op thread (the machine's two cores are shared). Run:
``flock /tmp/slmkit-bench.lock python bench/eval_vs_lmeval.py``. Writes ``bench/results/eval_vs_lmeval.json``.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("SLMKIT_QUIET", "1")

from bench.common import check, info, report  # noqa: E402

CACHE = Path(os.environ.get("SLMKIT_BENCH_CACHE", "/tmp/slmkit-bench-cache")) / "eval_vs_lmeval"
MODELS = {"pico-short": ("pico", 80), "pico-long": ("pico", 300), "tiny": ("tiny", 200)}
GRID_TASKS = ["gsm8k", "svamp", "math_builtin", "sorting_8_positive", "arc_challenge"]
N_THROUGHPUT, MAX_NEW, BATCH, K_SHOT, GRID_LIMIT = 64, 128, 32, 5, 40
SMOKE = "--smoke" in sys.argv  # a few items per part, to check the script runs; writes no results
if SMOKE:
    N_THROUGHPUT, MAX_NEW, GRID_LIMIT = 4, 8, 2


def _training_rows() -> list[dict]:
    """GSM8K train in the eval's own answer format, plus built-in math and sorting (other seeds than eval)."""
    from slmkit.data.tasks import get_task
    from slmkit.eval.prompts import render
    from slmkit.eval.taskspec import load_items, load_spec

    spec = load_spec("gsm8k")
    _, pool = load_items(spec)
    rows = [{"prompt": render(spec.templates.direct, it), "completion": f" {it['solution']} The answer is "
             f"{it['answer']}."} for it in pool[:3000]]
    rows += get_task("math")(3000, 11, min_steps=1, max_steps=4, max_operand=20)
    rows += get_task("sorting")(1000, 12, length=8)
    return rows


def prepare_models() -> dict[str, str]:
    """Train (once) a tokenizer and three tiny models; returns name -> model folder."""
    from slmkit.data.loaders import write_rows
    from slmkit.models.tokenizer import save_tokenizer, train_tokenizer
    from slmkit.train import sft

    CACHE.mkdir(parents=True, exist_ok=True)
    rows_file, tok_dir = CACHE / "train.jsonl", CACHE / "tokenizer"
    if not tok_dir.exists():
        rows = _training_rows()
        write_rows(rows_file, rows)
        save_tokenizer(train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in rows], 2048), tok_dir)
    paths = {}
    for name, (preset, steps) in MODELS.items():
        out = CACHE / name
        if not (out / "model" / "config.json").exists():
            began = time.time()
            cfg = sft.Config(train_file=str(rows_file), tokenizer=str(tok_dir), preset=preset, steps=steps,
                             batch_size=8, lr=3e-3, warmup_steps=10, max_length=256, log_every=50, seed=0)
            sft.run(cfg, out)
            print(f"trained {name} ({preset}, {steps} steps) in {time.time() - began:.0f}s", flush=True)
        paths[name] = str(out / "model")
    return paths


def _lmeval_filters(yaml_name: str = "gsm8k-cot.yaml"):
    """lm-eval's filter ensembles of a gsm8k task, built from its installed task YAML."""
    import lm_eval
    import yaml
    from lm_eval.filters import build_filter_ensemble

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    config = yaml.load((Path(lm_eval.__file__).parent / "tasks/gsm8k" / yaml_name).read_text(), Loader=Loader)
    ensembles = {}
    for spec in config["filter_list"]:
        steps = [(s["function"], {k: v for k, v in s.items() if k != "function"}) for s in spec["filter"]]
        ensembles[spec["name"]] = build_filter_ensemble(spec["name"], steps)
    return ensembles


def _apply(ensemble, texts: list[str]) -> list[str | None]:
    resps: object = [[t] for t in texts]
    for f in ensemble.filters:
        resps = f().apply(resps, [{}] * len(texts))
    return [None if v == "[invalid]" else v for v in resps]


def throughput(model_path: str) -> tuple[list, list[str]]:
    """Samples/s of both harnesses on the same 5-shot CoT GSM8K prompts; returns records and our outputs."""
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    from slmkit.eval.harness import Settings, run_cell
    from slmkit.eval.prompts import build_prompts
    from slmkit.eval.stage import _local_subjects
    from slmkit.eval.store import Store
    from slmkit.eval.taskspec import load_items, load_spec

    spec = load_spec("gsm8k")
    items, pool = load_items(spec)
    items = items[:N_THROUGHPUT]
    (subject,) = _local_subjects(model_path, None, [])
    settings = Settings(["kshot_cot"], ["strict", "flexible"], [0], K_SHOT, MAX_NEW, 0.0, 1.0, BATCH, "plain",
                        "strict", True)
    lm = HFLM(pretrained=model_path, batch_size=BATCH, device="cpu", add_bos_token=True, max_length=2048)
    prompts = build_prompts(spec, items, pool, "kshot_cot", K_SHOT, 0)
    requests = [Instance(request_type="generate_until", doc={}, idx=0, arguments=(
        p + "\n", {"until": list(spec.stop), "max_gen_toks": MAX_NEW, "do_sample": False})) for p in prompts]
    filters = _lmeval_filters()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "r.sqlite")
        began = time.perf_counter()
        run_cell(store, subject, "gsm8k", spec, items, pool, "kshot_cot", 0, settings, {})
        ours_s = time.perf_counter() - began
        by_id = {r["item_id"]: r["output"] for r in store.query("SELECT item_id, output FROM generations")}
        store.close()
    ours = [by_id[it["id"]] for it in items]
    began = time.perf_counter()
    theirs = lm.generate_until(requests, disable_tqdm=True)
    scored = {name: _apply(f, theirs) for name, f in filters.items()}
    lmeval_s = time.perf_counter() - began
    same = sum(a == b for a, b in zip(ours, theirs)) / len(items)
    assert scored  # lm-eval's scoring ran on its own generations
    records = [info("throughput: items (5-shot CoT GSM8K, greedy, max 128 new tokens, batch 32)", len(items)),
               info("throughput: slmkit samples/s", round(len(items) / ours_s, 3)),
               info("throughput: lm-eval HFLM samples/s", round(len(items) / lmeval_s, 3)),
               check("throughput: slmkit / lm-eval HF backend", len(items) / ours_s / (len(items) / lmeval_s), ">=", 2.0),
               check("throughput: identical generations (share of items)", same, ">=", 1.0)]
    return records, theirs


def parity(outputs: list[str]) -> list:
    """slmkit's GSM8K extractors vs lm-eval's filters on real generations (plus answer-format variants)."""
    from slmkit.eval.extractors import answer_is, last_number, strict_hash

    filters = _lmeval_filters()
    texts = outputs + [o.replace("The answer is", "####") for o in outputs]
    strict = _apply(filters["strict-match"], texts)
    strict_ok = sum(a == b for a, b in zip([answer_is(t) for t in texts], strict)) / len(texts)
    flex = _apply(filters["flexible-extract"], texts)
    flex_ok = sum(a == b for a, b in zip([last_number(t) for t in texts], flex)) / len(texts)
    hash_theirs = _apply(_lmeval_filters("gsm8k.yaml")["strict-match"], texts)
    hash_ok = sum(a == b for a, b in zip([strict_hash(t) for t in texts], hash_theirs)) / len(texts)
    return [info("parity: generations compared", len(texts)),
            check("parity: strict (The answer is) agreement with lm-eval strict-match", strict_ok, ">=", 1.0),
            check("parity: strict (#### n) agreement with lm-eval gsm8k strict-match", hash_ok, ">=", 1.0),
            check("parity: flexible agreement with lm-eval flexible-extract", flex_ok, ">=", 1.0)]


def grid(paths: dict[str, str]) -> list:
    """3 models × 5 tasks × 2 strategies × 3 seeds through ``slmkit eval``; wall time and the report."""
    from slmkit.cli import main

    runs = CACHE / ("grid_smoke" if SMOKE else "grid_runs")
    args = ["eval", "--models", *paths.values(), "--tasks", *GRID_TASKS, "--strategies", "direct", "kshot",
            "--seeds", "0", "1", "2", "--methods", "strict", "flexible", "--limit", str(GRID_LIMIT), "--runs-dir", str(runs),
            "--name", "grid", "--force", "k_shot=3", "measure_memory=false"]
    print("grid: slmkit " + " ".join(args), flush=True)
    began = time.perf_counter()
    code = main(args)
    wall = time.perf_counter() - began
    section = (runs / "grid" / "00_eval" / "report_section.md").read_text()
    cells = len(re.findall(r"\d\.\d{3} ± \d\.\d{3}", section))
    print(section[:3000], flush=True)
    return [info("grid: cells (model × task × strategy × method, each over 3 seeds)", cells),
            check("grid: exit code", code, "<=", 0),
            check("grid: wall time (s)", round(wall, 1), "<=", 900.0, "s"),
            check("grid: report cells with mean ± sd", cells, ">=", 3 * 5 * 2 * 2)]


def main() -> int:
    import torch

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 intra-op thread for both harnesses; cache {CACHE}", flush=True)
    paths = prepare_models()
    records, outputs = throughput(paths["tiny"])
    records += parity(outputs)
    records += grid(paths)
    if SMOKE:
        for r in records:
            print(r)
        return 0
    report("eval_vs_lmeval", records)
    return 0 if all(r.met is not False for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
