"""Benchmark of the ``synth`` stage (issue 10): Orca-Math rounds, concurrency against a slow server, resume.

1. **Quality** -- 500 seed problems of the built-in math task, two Suggester/Editor rounds with the
   rule-based teacher (``rule_math``; two Editor samples per round), Solver verification, length filter,
   exact + MinHash dedup and n-gram decontamination against every evaluation set. Target: >= 1,000 valid
   rows (re-checked here: every step exact, the final answer right, the prompt re-solved to that answer)
   with more solution steps on average than the seeds. Validity, dedup and contamination rates reported.
2. **Concurrency** -- the same pipeline against an OpenAI-compatible server on 127.0.0.1 that wraps the
   rule teacher and adds a fixed latency per request (``bench/latency_server.py``, 200 ms: an LLM API's
   order of magnitude), through the ``openai`` backend; rows/s of generation with 16 requests in flight
   vs one at a time (fresh caches). Target: >= 4x. "In flight" is measured two ways: the engine packing 16
   waiting prompts into each call of the backend (which sends them concurrently; the target), and 16
   single-prompt calls at once (reported).
3. **Resume** -- the concurrent run again in a subprocess, killed (SIGKILL) once half of its items are
   journaled, then started again; its ``train.jsonl`` must equal the uninterrupted run's, row for row.

Run with ``flock /tmp/slmkit-bench.lock python bench/synth_pipeline.py``; writes
``bench/results/synth_pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from itertools import zip_longest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import Record, check, info, report  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT), "SLMKIT_QUIET": "1"}


def quality(work: Path, n_seeds: int) -> list[Record]:
    from slmkit.data.tasks.math_word import verify_solution
    from slmkit.synth import math_story
    from slmkit.synth.stage import Config, run

    start = time.perf_counter()
    run(Config(seed_task="math", n=n_seeds, seed=1, rounds=2, edits_per_round=2), work / "quality")
    wall = time.perf_counter() - start
    rows = [json.loads(line) for line in (work / "quality" / "train.jsonl").read_text().splitlines()]
    stats = json.loads((work / "quality" / "stats.json").read_text())
    valid = [r for r in rows if verify_solution(r["completion"], r["answer"])
             and str(math_story.parse(r["prompt"]).answer) == r["answer"]]
    return [
        check(f"valid problems from {n_seeds} seeds, 2 rounds", len(valid), ">=", 1000),
        check("mean solution steps: synthetic minus seeds", stats["mean_steps_rows"] - stats["mean_steps_seeds"], ">", 0),
        info("mean solution steps of the seeds", stats["mean_steps_seeds"]),
        info("mean solution steps of the rows", stats["mean_steps_rows"]),
        info("rows per round", json.dumps(stats["rows_by_round"])),
        info("validity rate (verified / solved)", stats["validity_rate"]),
        info("dedup rate (exact + near / verified)", stats["dedup_rate"]),
        info("contamination rate (/ verified)", stats["contamination_rate"]),
        info("rejections", json.dumps(stats["rejections"])),
        info("decontaminated against (items)", sum(stats["decontamination"]["sources"].values())),
        info("quality run wall time (s)", round(wall, 1)),
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """The latency server in its own process (so its work does not share this process's GIL)."""
    import httpx

    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "latency_server.py"), "--latency", str(latency),
                             "--port", str(port)], env=ENV)
    url = f"http://127.0.0.1:{port}/v1"
    for _ in range(300):
        try:
            httpx.get(f"{url}/models", timeout=1).raise_for_status()
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("latency server did not start")


# Ways to run the same pipeline against the server: (synth concurrency, synth batch_size, backend concurrency).
SEQUENTIAL = (1, 1, 1)
CONCURRENT = (1, 16, 16)  # the engine packs 16 waiting prompts per call; the backend sends them at once
IN_FLIGHT = (16, 1, 1)  # 16 single-prompt calls at once (each call pays the client's own set-up)


def http_config(url: str, n: int, mode: tuple[int, int, int], cache: Path) -> dict:
    concurrency, batch_size, backend_concurrency = mode
    return {"seed_task": "math", "n": n, "seed": 2, "rounds": 2, "edits_per_round": 1, "decontaminate": [],
            "backend": {"kind": "openai", "model": "teacher", "base_url": url, "concurrency": backend_concurrency},
            "concurrency": concurrency, "batch_size": batch_size, "cache_dir": str(cache)}


def concurrency(work: Path, url: str, n: int, latency: float) -> tuple[list[Record], Path]:
    from slmkit.synth.stage import Config, run

    rates, outputs = {}, {}
    for mode in (SEQUENTIAL, CONCURRENT, IN_FLIGHT):
        folder = work / "http_{}_{}_{}".format(*mode)
        run(Config(**http_config(url, n, mode, folder / "cache")), folder)
        stats = json.loads((folder / "stats.json").read_text())
        rates[mode] = stats["rows"] / stats["engine"]["generation_s"]
        outputs[mode] = (folder / "train.jsonl").read_text()
        calls = stats["engine"]["calls"]
    differing = max(_differing(outputs[SEQUENTIAL], outputs[m]) for m in (CONCURRENT, IN_FLIGHT))
    return [
        check("rows/s: concurrent (16 prompts per call) / sequential", rates[CONCURRENT] / rates[SEQUENTIAL], ">=", 4),
        info("rows/s sequential (1 call of 1 prompt at a time)", round(rates[SEQUENTIAL], 2)),
        info("rows/s concurrent (batch_size 16, backend concurrency 16)", round(rates[CONCURRENT], 2)),
        info("rows/s with 16 single-prompt calls in flight", round(rates[IN_FLIGHT], 2)),
        info("ratio: 16 single-prompt calls in flight / sequential", round(rates[IN_FLIGHT] / rates[SEQUENTIAL], 2)),
        info(f"teacher calls per run ({n} seeds, {latency * 1000:.0f} ms latency)", calls),
        check("rows differing between sequential and concurrent runs", differing, "<=", 0),
    ], work / "http_{}_{}_{}".format(*CONCURRENT) / "train.jsonl"


RUN_STAGE = "import json, sys; from pathlib import Path; from slmkit.synth.stage import Config, run; " \
            "run(Config(**json.loads(sys.argv[1])), Path(sys.argv[2]))"


def resume(work: Path, url: str, n: int, reference: Path) -> list[Record]:
    folder = work / "killed"
    args = [sys.executable, "-c", RUN_STAGE, json.dumps(http_config(url, n, CONCURRENT, folder / "cache")), str(folder)]
    proc = subprocess.Popen(args, env=ENV)
    journal = folder / "journal.jsonl"
    while proc.poll() is None and (not journal.exists() or len(journal.read_text().splitlines()) - 1 < n // 2):
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(journal.read_text().splitlines()) - 1
    subprocess.run(args, env=ENV, check=True)
    ids = [json.loads(line)["id"] for line in journal.read_text().splitlines()[1:]]
    return [
        info("items journaled when killed", f"{done_at_kill}/{n}"),
        check("rows differing: killed + resumed vs uninterrupted",
              _differing((folder / "train.jsonl").read_text(), reference.read_text()), "<=", 0),
        check("items journaled twice", len(ids) - len(set(ids)), "<=", 0),
        info("rows", len(reference.read_text().splitlines())),
    ]


def _differing(a: str, b: str) -> int:
    return sum(x != y for x, y in zip_longest(a.splitlines(), b.splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description="synth pipeline benchmark")
    parser.add_argument("--seeds", type=int, default=500)
    parser.add_argument("--http-seeds", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the server waits per request")
    args = parser.parse_args()
    os.environ["SLMKIT_QUIET"] = "1"
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        work = Path(tmp)
        records = quality(work, args.seeds)
        server, url = start_server(args.latency)
        try:
            found, reference = concurrency(work, url, args.http_seeds, args.latency)
            records += found + resume(work, url, args.http_seeds, reference)
        finally:
            server.kill()
    report("synth_pipeline", records)


if __name__ == "__main__":
    main()
