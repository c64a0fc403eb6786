"""Generation latency, throughput and memory of models over a grid of input lengths, output lengths and batches.

Method (one *run* = one batched greedy generation of exactly ``T`` new tokens from ``B`` random prompts of
``L`` tokens, no padding, KV cache on):

* transformers models run ``model.generate(..., min_new_tokens=T, max_new_tokens=T, use_cache=True)`` with
  a streamer that timestamps every generated step (the streamer sees each step's tokens after they are
  chosen; on CUDA ``tokens.cpu()`` synchronises first). CTranslate2 exports run ``generate_batch`` /
  ``translate_batch`` with a per-token callback that does the same.
* time to first token (TTFT) = first step's timestamp - start (prefill, or encoder + first decoder step);
  prefill tokens/s = ``B*L / TTFT``; decode tokens/s = ``B*(T-1) / (last - first step)``; end-to-end latency
  = return time - start.
* peak memory = the highest resident set size (RSS, sampled every 2 ms by a thread) during the run, minus
  the RSS before it is reported as ``peak_rss_delta_mb``; on CUDA the peak allocated GPU memory.
* each grid point gets warm-up runs (same B and L, 2 new tokens) and ``repeats`` timed runs; models are
  interleaved run by run so that load from other processes hits them alike; figures are medians, with
  min and max as spread.

Reads: model presets (``arch:preset``, random weights), transformers folders / hub ids, or CTranslate2
exports (``slmkit export``). Writes nothing (see ``slmkit.bench.cli`` for files and plots).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ModelError


@dataclass
class Runner:
    """A model ready to be timed, with the facts reported beside its timings."""

    name: str
    model: Any
    runtime: str  # "transformers" or "ctranslate2"
    kind: str  # "decoder" or "encdec"
    params: int
    disk_bytes: int
    vocab_size: int
    device: str = "cpu"

    def run(self, input_ids: list[list[int]], new_tokens: int) -> tuple[float, list[float], float]:
        """(start, per-step timestamps, end) of one greedy generation of exactly ``new_tokens`` tokens."""
        if self.runtime == "ctranslate2":
            return _run_ct2(self.model, input_ids, new_tokens)
        return _run_transformers(self.model, input_ids, new_tokens, self.device)


def _run_transformers(model: Any, input_ids: list[list[int]], new_tokens: int,
                      device: str) -> tuple[float, list[float], float]:
    import torch
    from transformers.generation.streamers import BaseStreamer

    class StepTimer(BaseStreamer):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.skipped_prompt = False

        def put(self, value: Any) -> None:
            if self.skipped_prompt:  # the first put is the prompt (or the decoder-start token)
                self.times.append(time.perf_counter())
            self.skipped_prompt = True

        def end(self) -> None:
            pass

    ids = torch.tensor(input_ids, device=device)
    timer = StepTimer()
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                       min_new_tokens=new_tokens, do_sample=False, use_cache=True, streamer=timer,
                       pad_token_id=model.config.pad_token_id, eos_token_id=None)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        end = time.perf_counter()
    return start, timer.times, end


def _run_ct2(model: Any, input_ids: list[list[int]], new_tokens: int) -> tuple[float, list[float], float]:
    times: dict[int, float] = {}

    def on_step(step: Any) -> bool:
        times[step.step] = time.perf_counter()  # the last batch entry of a step sets its time
        return False

    start = time.perf_counter()
    model.generate_ids(input_ids, new_tokens, min_new_tokens=new_tokens, callback=on_step)
    end = time.perf_counter()
    return start, [times[k] for k in sorted(times)], end


class PeakMemory:
    """Peak RSS (CPU) or peak allocated memory (CUDA) while the ``with`` block runs, in bytes."""

    def __init__(self, device: str = "cpu", interval: float = 0.002):
        self.device, self.interval = device, interval
        self.base = self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        import psutil

        self._proc = psutil.Process()
        self.base = self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc: Any) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.peak = torch.cuda.max_memory_allocated()
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def random_prompts(vocab_size: int, batch: int, length: int, seed: int) -> list[list[int]]:
    """Token ids drawn uniformly from the ordinary vocabulary (ids below 8 hold special tokens)."""
    import random

    rng = random.Random(seed)
    return [[rng.randrange(8, vocab_size) for _ in range(length)] for _ in range(batch)]


def summarise(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def time_point(runners: list[Runner], batch: int, input_len: int, output_len: int, repeats: int,
               warmup: int, seed: int = 0) -> list[dict[str, Any]]:
    """One grid point for every runner, runs interleaved; one record per runner."""
    if output_len < 2:
        raise ModelError("bench: output length must be at least 2 (decode speed needs two steps)")
    prompts = {r.name: random_prompts(r.vocab_size, batch, input_len, seed) for r in runners}
    for r in runners:
        for _ in range(warmup):
            r.run(prompts[r.name], 2)
    raw: dict[str, dict[str, list[float]]] = {r.name: {} for r in runners}
    for _ in range(repeats):
        for r in runners:
            with PeakMemory(r.device) as mem:
                start, steps, end = r.run(prompts[r.name], output_len)
            if len(steps) != output_len:
                raise ModelError(f"bench: {r.name} generated {len(steps)} tokens instead of {output_len}")
            ttft, decode_s = steps[0] - start, steps[-1] - steps[0]
            sample = {"ttft_s": ttft, "prefill_tok_s": batch * input_len / ttft,
                      "decode_tok_s": batch * (output_len - 1) / decode_s, "e2e_s": end - start,
                      "peak_mem_mb": mem.peak / 2**20, "peak_mem_delta_mb": (mem.peak - mem.base) / 2**20}
            for key, value in sample.items():
                raw[r.name].setdefault(key, []).append(value)
    return [_record(r, batch, input_len, output_len, raw[r.name]) for r in runners]


def _record(r: Runner, batch: int, input_len: int, output_len: int, raw: dict[str, list[float]]) -> dict:
    record: dict[str, Any] = {"model": r.name, "runtime": r.runtime, "kind": r.kind, "params": r.params,
                              "disk_mb": r.disk_bytes / 2**20, "device": r.device, "batch": batch,
                              "input_len": input_len, "output_len": output_len, "repeats": len(raw["e2e_s"])}
    for key, samples in raw.items():
        stats = summarise(samples)
        record[key] = stats["median"]
        record[key + "_min"], record[key + "_max"] = stats["min"], stats["max"]
    return record


def time_grid(runners: list[Runner], input_lengths: list[int], output_lengths: list[int], batch_sizes: list[int],
              repeats: int = 3, warmup: int = 1, seed: int = 0, on_point: Any = None) -> list[dict[str, Any]]:
    """Every (batch, input length, output length) point for every runner."""
    records = []
    for batch in batch_sizes:
        for input_len in input_lengths:
            for output_len in output_lengths:
                point = time_point(runners, batch, input_len, output_len, repeats, warmup, seed)
                records += point
                if on_point:
                    on_point(point)
    return records


def ratios(records: list[dict[str, Any]], model: str, baseline: str) -> list[dict[str, Any]]:
    """Per grid point: model / baseline for TTFT, end-to-end latency and memory; model / baseline speeds."""
    by_point: dict[tuple, dict[str, dict]] = {}
    for rec in records:
        by_point.setdefault((rec["batch"], rec["input_len"], rec["output_len"]), {})[rec["model"]] = rec
    out = []
    for (batch, input_len, output_len), recs in by_point.items():
        if model in recs and baseline in recs:
            a, b = recs[model], recs[baseline]
            out.append({"model": model, "baseline": baseline, "batch": batch, "input_len": input_len,
                        "output_len": output_len, "ttft_ratio": a["ttft_s"] / b["ttft_s"],
                        "decode_speedup": a["decode_tok_s"] / b["decode_tok_s"],
                        "e2e_ratio": a["e2e_s"] / b["e2e_s"],
                        "peak_mem_delta_ratio": a["peak_mem_delta_mb"] / max(b["peak_mem_delta_mb"], 1e-9)})
    return out


def environment(threads: int | None = None) -> dict[str, Any]:
    """Facts about the machine that a reader needs beside the timings."""
    import platform

    import torch

    env = {"cpu_count": os.cpu_count(), "torch_threads": threads or torch.get_num_threads(),
           "torch": torch.__version__, "platform": platform.platform(), "processor": platform.processor()}
    if hasattr(os, "getloadavg"):
        env["load_avg_1m"] = os.getloadavg()[0]
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
    return env


def folder_bytes(path: str | Path) -> int:
    """Bytes of the weight files (safetensors / CTranslate2 model.bin) in a model folder."""
    files = [f for f in Path(path).rglob("*") if f.suffix in (".safetensors", ".bin") and f.is_file()]
    return sum(f.stat().st_size for f in files)


def make_runner(spec: str, *, device: str = "cpu", dtype: str = "float32", attn: str = "default",
                threads: int = 0, seed: int = 0) -> Runner:
    """A runner for ``arch:preset`` (random weights), a CTranslate2 export, or a transformers folder / hub id."""
    from slmkit.deploy.ctranslate2 import META_FILE, CT2Model
    from slmkit.models.registry import ARCHITECTURES

    arch, _, preset = spec.partition(":")
    if Path(spec, META_FILE).exists():
        model = CT2Model(spec, device=device, threads=threads)
        kind = "encdec" if model.encoder_decoder else "decoder"
        return Runner(spec, model, "ctranslate2", kind, model.meta["params"], folder_bytes(spec),
                      model.meta["vocab_size"], device)
    if preset and arch in ARCHITECTURES and not Path(spec).exists():
        from slmkit.models.build import build

        model = build(arch, preset, seed=seed)
    else:
        from slmkit.models.load import load_model

        model = load_model(spec)
    return transformers_runner(model, spec, device=device, dtype=dtype, attn=attn)


def transformers_runner(model: Any, name: str, *, device: str = "cpu", dtype: str = "float32",
                        attn: str = "default") -> Runner:
    """A runner for a transformers model object (moved to ``device`` / ``dtype``, attention set)."""
    import torch

    from slmkit.models.build import count_parameters
    from slmkit.models.load import is_encoder_decoder

    if attn != "default":
        try:
            model.set_attn_implementation(attn)
        except (ValueError, ImportError) as err:
            raise ModelError(f"bench: {name} cannot use attention '{attn}': {err}") from err
    model = model.to(device=device, dtype=getattr(torch, dtype)).eval()
    unique = {id(p): p for p in model.parameters()}.values()
    payload = sum(p.numel() * p.element_size() for p in unique)  # what save_pretrained writes (tied once)
    kind = "encdec" if is_encoder_decoder(model) else "decoder"
    return Runner(name, model, "transformers", kind, count_parameters(model), payload,
                  model.config.get_text_config(decoder=True).vocab_size, device)
