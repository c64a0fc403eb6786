"""Bench for encoder–decoder SLMs (issue 3): is a parameter-matched encoder–decoder faster than a decoder-only
model on this machine, as "Return of the Encoder" (arXiv 2501.16273) reports, and is the CPU deployment fast?

1. Speed, per size (~80M and ~300M parameters, vocabulary 32,000): ``slmkit.models.pairs.matched_pair``
   builds a decoder-only and an ``encdec`` model with equal parameters (±2%, same width family; random
   weights — speed does not depend on them); ``slmkit.bench.latency`` times both side by side (runs
   interleaved, fp32, eager attention, warm-up then median of the repeats) at input 512, output 64, batch
   1 and 8. Targets: encdec time to first token ≤ 0.53× the decoder's (the paper's "47% lower"), decode
   throughput at batch 8 ≥ 4.7×.
2. Deployment, at ~80M: both models exported to CTranslate2 (int8 and fp32) and timed at batch 1 beside
   transformers eager fp32 on the same weights. Targets: int8 decode tokens/s ≥ 3× eager fp32, and ≥ 60% of
   the memory-bandwidth limit (``slmkit.bench.bandwidth``: measured read bandwidth / weight bytes per token).
3. Quality: the architecture part of ``recipes/return_of_the_encoder.yaml`` — the parameter-matched pico
   decoder and encdec trained with the same SFT budget on the built-in math task — exact match of both
   (the paper reports +2–4 points for encdec); reported, no target.

Writes ``bench/results/encdec_vs_decoder.json`` (records) and ``bench/results/encdec_vs_decoder/``
(every timing with its spread: results.json/.csv and the plots of ``slmkit bench``).
Run: ``flock /tmp/slmkit-bench.lock python bench/encdec_vs_decoder.py`` (about 30 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import RESULTS, check, info, report  # noqa: E402

VOCAB = 32000
SIZES = {"80M": 80e6, "300M": 300e6}
INPUT, OUTPUT = 512, 64
QUALITY_STAGES = ("data", "tokenizer", "decoder_ce", "decoder_ce_eval", "student_ce", "student_ce_eval")


def matched_models(budget: float) -> tuple:
    """(encdec, decoder) with random weights and equal parameters near ``budget``."""
    from slmkit.models.build import build
    from slmkit.models.pairs import matched_pair

    dec_shape, enc_shape = matched_pair(int(budget), VOCAB)
    return (build("encdec", "base", vocab_size=VOCAB, overrides=enc_shape, seed=0),
            build("decoder", "base", vocab_size=VOCAB, overrides=dec_shape, seed=0))


def speed(size: str, repeats: int, timings: list, ratio_rows: list) -> list:
    """Records of the side-by-side timing of one matched pair."""
    from slmkit.bench.latency import ratios, time_grid, transformers_runner

    encdec, decoder = matched_models(SIZES[size])
    runners = [transformers_runner(encdec, f"encdec-{size}", attn="eager"),
               transformers_runner(decoder, f"decoder-{size}", attn="eager")]
    print(f"timing {size}: encdec {runners[0].params:,} vs decoder {runners[1].params:,} parameters", flush=True)
    records = time_grid(runners, [INPUT], [OUTPUT], [1, 8], repeats, warmup=1,
                        on_point=lambda p: print("  " + ", ".join(f"{r['model']} b{r['batch']}: ttft "
                                                                  f"{r['ttft_s']:.3f}s decode {r['decode_tok_s']:.1f}"
                                                                  " tok/s" for r in p), flush=True))
    rows = {r["batch"]: r for r in ratios(records, runners[0].name, runners[1].name)}
    timings += records
    ratio_rows += rows.values()
    by = {(r["model"], r["batch"]): r for r in records}
    out = [info(f"{size}: parameters encdec / decoder", f"{runners[0].params:,} / {runners[1].params:,}")]
    for batch in (1, 8):
        e, d = by[(runners[0].name, batch)], by[(runners[1].name, batch)]
        out += [info(f"{size} b{batch}: TTFT s encdec / decoder", f"{e['ttft_s']:.3f} / {d['ttft_s']:.3f}"),
                check(f"{size} b{batch}: TTFT ratio encdec/decoder", round(rows[batch]["ttft_ratio"], 3), "<=", 0.53),
                info(f"{size} b{batch}: decode tok/s encdec / decoder",
                     f"{e['decode_tok_s']:.1f} / {d['decode_tok_s']:.1f}")]
    out.append(check(f"{size} b8: decode throughput ratio encdec/decoder", round(rows[8]["decode_speedup"], 2),
                     ">=", 4.7))
    out.append(info(f"{size} b1: decode throughput ratio encdec/decoder", round(rows[1]["decode_speedup"], 2)))
    del encdec, decoder, runners
    gc.collect()
    return out


def padded_tokenizer(vocab: int):
    """A math BPE tokenizer padded with placeholder tokens to exactly ``vocab`` ids (CTranslate2 needs one
    token string per model id); the prompts of the timing are random ids, so the text side does not matter."""
    from slmkit.data.tasks import get_task
    from slmkit.models.tokenizer import train_tokenizer

    rows = get_task("math")(2000, seed=0)
    tok = train_tokenizer([r["prompt"] + "\n" + r["completion"] for r in rows], vocab_size=512)
    tok.add_tokens([f"<unused_{i}>" for i in range(vocab - len(tok))])
    return tok


def deployment(repeats: int, timings: list, ratio_rows: list) -> list:
    """Records of CTranslate2 int8 / fp32 against transformers eager fp32 at batch 1, ~80M, both kinds."""
    from slmkit.bench.bandwidth import decode_params, limit_tokens_per_s, read_bandwidth
    from slmkit.bench.latency import make_runner, ratios, time_grid, transformers_runner
    from slmkit.deploy.ctranslate2 import export
    from slmkit.models.load import save_model

    bandwidth = read_bandwidth()
    out = [info("measured read bandwidth GB/s", round(bandwidth / 1e9, 2))]
    tok = padded_tokenizer(VOCAB)
    with tempfile.TemporaryDirectory() as tmp:
        for model in matched_models(SIZES["80M"]):
            kind = "encdec" if model.config.is_encoder_decoder else "decoder"
            save_model(model, tok, Path(tmp, kind))
            runners = [transformers_runner(model, f"{kind}-80M-eager-fp32", attn="eager")]
            for quant in ("int8", "float32"):
                folder = export(str(Path(tmp, kind)), Path(tmp, f"{kind}-{quant}"), quant)
                runners.append(make_runner(str(folder)))
                runners[-1].name = f"{kind}-80M-ct2-{quant}"
            print(f"timing deployment of {kind}-80M", flush=True)
            records = time_grid(runners, [INPUT], [OUTPUT], [1], repeats, warmup=1)
            timings += records
            by = {r["model"]: r for r in records}
            per_token = decode_params(model)
            for quant, nbytes in (("int8", 1), ("float32", 4)):
                ct2, base = by[f"{kind}-80M-ct2-{quant}"], by[runners[0].name]
                ratio_rows += ratios(records, ct2["model"], base["model"])
                limit = limit_tokens_per_s(bandwidth, per_token, nbytes)
                speedup = ct2["decode_tok_s"] / base["decode_tok_s"]
                share = ct2["decode_tok_s"] / limit
                out += [info(f"{kind} CT2 {quant} b1: decode tok/s (eager fp32: {base['decode_tok_s']:.1f})",
                             round(ct2["decode_tok_s"], 1)),
                        info(f"{kind} CT2 {quant}: bandwidth limit tok/s ({per_token:,} params/token)", round(limit, 1))]
                if quant == "int8":
                    out += [check(f"{kind} CT2 int8 b1: decode speed-up over eager fp32", round(speedup, 2), ">=", 3.0),
                            check(f"{kind} CT2 int8 b1: share of bandwidth limit", round(share, 3), ">=", 0.6)]
                else:
                    out += [info(f"{kind} CT2 fp32 b1: decode speed-up over eager fp32", round(speedup, 2)),
                            info(f"{kind} CT2 fp32 b1: share of bandwidth limit", round(share, 3))]
            del runners, model
            gc.collect()
    return out


def quality(runs_dir: Path) -> list:
    """Exact match of the parameter-matched decoder and encdec trained with the same SFT budget."""
    from slmkit.cli import recipe_path
    from slmkit.config import load_yaml
    from slmkit.recipe import resolve, run_plan

    base, lines = load_yaml(recipe_path("return_of_the_encoder"))
    recipe = {**base, "stages": [s for s in base["stages"] if s.get("name", s["stage"]) in QUALITY_STAGES]}
    plan = resolve(recipe, lines, "return_of_the_encoder (architecture bench)", [], runs_dir)
    results = run_plan(plan, echo=lambda text: print(text, flush=True))
    dec, enc = results["decoder_ce"]["metrics"], results["student_ce"]["metrics"]
    acc_dec = 100 * results["decoder_ce_eval"]["metrics"]["accuracy"]
    acc_enc = 100 * results["student_ce_eval"]["metrics"]["accuracy"]
    stage = next(s for s in recipe["stages"] if s.get("name") == "student_ce")
    return [info("quality: parameters encdec / decoder (pico, matched)", f"{enc['parameters']:,} / {dec['parameters']:,}"),
            info("quality: SFT budget rows / steps / batch (both)",
                 f"{stage['max_train_rows']} / {stage['steps']} / {stage['batch_size']}"),
            info("quality: exact match % encdec / decoder", f"{acc_enc:.1f} / {acc_dec:.1f}"),
            info("quality: encdec − decoder, points (paper: +2 to +4)", round(acc_enc - acc_dec, 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], choices=["speed", "deploy", "quality"])
    parser.add_argument("--runs-dir", default="runs/bench", help="run folders of the quality part (reused)")
    args = parser.parse_args(argv)
    os.environ.setdefault("SLMKIT_QUIET", "1")
    from slmkit.bench.latency import environment
    from slmkit.bench.report import write_results

    began = time.time()
    out, timings, ratio_rows = [info("CPU threads (torch)", environment()["torch_threads"])], [], []
    if "speed" not in args.skip:
        for size in args.sizes:
            out += speed(size, args.repeats, timings, ratio_rows)
    if "deploy" not in args.skip:
        out += deployment(args.repeats, timings, ratio_rows)
    if "quality" not in args.skip:
        out += quality(Path(args.runs_dir))
    out.append(info("GPU comparison (330M / 1B, bf16)", "not run: no GPU machine was lent to this task"))
    out.append(info("bench wall time s", round(time.time() - began)))
    if timings:
        write_results(RESULTS / "encdec_vs_decoder", timings, ratio_rows, environment())
    report("encdec_vs_decoder", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
