"""``slmkit bench``: timing records and ratios, result files and plots, the CTranslate2 runner, the
bandwidth model and the ``efficiency`` stage (tiny grids: these check the method, not the speed); and the
target records that the scripts under ``bench/`` write."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from slmkit.bench.bandwidth import decode_params, limit_tokens_per_s, read_bandwidth
from slmkit.bench.latency import make_runner, ratios, time_point
from slmkit.errors import ConfigError, ModelError

GRID = ["--input-lengths", "8", "16", "--output-lengths", "3", "--batch-sizes", "1", "2", "--repeats", "2",
        "--warmup", "0", "--threads", "1"]


def test_time_point_records():
    runners = [make_runner("encdec:pico"), make_runner("decoder:pico")]
    records = time_point(runners, batch=2, input_len=8, output_len=4, repeats=2, warmup=1)
    assert [r["model"] for r in records] == ["encdec:pico", "decoder:pico"]
    for r in records:
        assert r["repeats"] == 2 and r["ttft_s"] > 0 and r["decode_tok_s"] > 0 and r["e2e_s"] >= r["ttft_s"]
        assert r["ttft_s_min"] <= r["ttft_s"] <= r["ttft_s_max"]
        # the median of per-repeat rates lies between the rates of the slowest and the fastest repeat
        assert 2 * 8 / r["ttft_s_max"] - 1e-9 <= r["prefill_tok_s"] <= 2 * 8 / r["ttft_s_min"] + 1e-9
        assert r["peak_mem_mb"] > 0 and r["disk_mb"] > 0
    ratio = ratios(records, "encdec:pico", "decoder:pico")[0]
    assert ratio["ttft_ratio"] == pytest.approx(records[0]["ttft_s"] / records[1]["ttft_s"])
    assert ratio["decode_speedup"] == pytest.approx(records[0]["decode_tok_s"] / records[1]["decode_tok_s"])


def test_compare_command_writes_results_and_plots(tmp_path, capsys):
    from slmkit.cli import main

    assert main(["bench", "compare", "encdec:pico", "decoder:pico", *GRID, "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["records"]) == 2 * 2 * 2 and len(data["ratios"]) == 4
    assert data["environment"]["torch_threads"] == 1
    assert (tmp_path / "results.csv").read_text().startswith("model,")
    assert (tmp_path / "latency_vs_input.png").stat().st_size > 0
    assert (tmp_path / "throughput_vs_batch.png").stat().st_size > 0
    assert "encdec:pico / decoder:pico" in capsys.readouterr().out


def test_bad_requests_fail_clearly(tmp_path):
    from slmkit.bench.cli import main

    with pytest.raises(ConfigError, match="exactly two models"):
        main(["compare", "decoder:pico", *GRID])
    with pytest.raises(ConfigError, match="at least 2"):
        main(["decoder:pico", "--output-lengths", "1", "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="named twice"):
        main(["decoder:pico", "decoder:pico", *GRID, "--out", str(tmp_path)])
    with pytest.raises(ModelError, match="cannot use attention 'sdpa'"):
        make_runner("encdec:pico", attn="sdpa")


def test_ctranslate2_runner(trained_dirs, tmp_path):
    pytest.importorskip("ctranslate2")
    from slmkit.deploy.ctranslate2 import export

    out = export(str(trained_dirs["encdec"]), tmp_path / "ct2", "int8")
    runner = make_runner(str(out), threads=1)
    assert runner.runtime == "ctranslate2" and runner.kind == "encdec" and runner.params > 0
    (record,) = time_point([runner], batch=2, input_len=8, output_len=5, repeats=1, warmup=0)
    assert record["decode_tok_s"] > 0 and record["disk_mb"] > 0


def test_decode_path_and_bandwidth_limit():
    import torch

    from slmkit.models.build import build, count_parameters

    with torch.device("meta"):
        dec, enc = build("decoder", "pico"), build("encdec", "pico")
    assert decode_params(dec) == count_parameters(dec)
    cfg = enc.config.decoder
    hd, kv = cfg.head_dim, cfg.num_key_value_heads
    decoder_stack = sum(p.numel() for p in enc.model.decoder.layers.parameters()) + cfg.hidden_size  # + final norm
    cross_kv = cfg.num_hidden_layers * 2 * cfg.hidden_size * kv * hd
    table = enc.model.decoder.embed_tokens.weight.numel()
    assert decode_params(enc) == decoder_stack - cross_kv + table
    assert read_bandwidth(megabytes=16, repeats=1) > 1e8
    assert limit_tokens_per_s(1e9, 1_000_000, 4.0) == pytest.approx(250.0)


def test_efficiency_stage(tmp_path):
    from slmkit.artifacts import write_jsonl
    from slmkit.bench import stage

    write_jsonl(tmp_path / "a.jsonl", [{"correct": True}, {"correct": False}])
    write_jsonl(tmp_path / "b.jsonl", [{"correct": False}, {"correct": False}])
    cfg = stage.Config(model="encdec:pico", baseline="decoder:pico", predictions=str(tmp_path / "a.jsonl"),
                       baseline_predictions=str(tmp_path / "b.jsonl"), input_lengths=[8], output_lengths=[3],
                       batch_sizes=[1], repeats=1, warmup=0, threads=1)
    metrics = stage.run(cfg, tmp_path / "run").metrics
    assert metrics["model_accuracy"] == 0.5 and metrics["baseline_accuracy"] == 0.0
    assert metrics["ttft_ratio"] > 0 and metrics["decode_speedup"] > 0
    section = (tmp_path / "run" / "report_section.md").read_text()
    assert "model:encdec:transformers" in section and "0.500" in section
    with pytest.raises(ConfigError, match="model is not set"):
        stage.run(stage.Config(), tmp_path / "x")


@pytest.fixture
def common(monkeypatch):
    """bench/common.py, loaded from its file (bench/ is not a package of slmkit)."""
    spec = importlib.util.spec_from_file_location("bench_common", Path(__file__).parent.parent / "bench" / "common.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "bench_common", module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_records_write_strict_json(common, tmp_path, monkeypatch):
    """bench/common: a figure with nothing to divide by is null and missed, so the results file stays JSON."""
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    records = [common.check("kept", float("nan"), ">=", 0.9), common.check("ratio", 0.95, ">=", 0.9)]
    path = common.report("demo", records)
    loaded = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert loaded == [{"name": "kept", "value": None, "target": ">= 0.9", "met": False},
                      {"name": "ratio", "value": 0.95, "target": ">= 0.9", "met": True}]
    assert common.report("demo", records, folder=tmp_path / "variant").parent == tmp_path / "variant"


def test_bench_mean_sd_over_seeds(common):
    """bench/common's mean ± sd, shared by the seed-swept benchmarks: sample sd, and 0 for one seed."""
    assert common.mean_sd([1.0, 3.0]) == pytest.approx((2.0, 2 ** 0.5))
    assert common.mean_sd([5.0]) == (5.0, 0.0)


def test_practice_bench_variant_settings_and_work_folders(monkeypatch):
    """bench/practice_gain ``--set``: one setting changes, unknown keys fail by name, and the work folders' keys
    change with the settings, so a variant never reuses models trained with other ones."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script puts the repository root on it
    spec = importlib.util.spec_from_file_location("bench_practice_gain",
                                                  Path(__file__).parent.parent / "bench" / "practice_gain.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    keys = (bench.settings_key("sft", bench.DATA, bench.SFT), bench.settings_key("practice", bench.PRACTICE))
    bench.apply_settings(["method=kto", "sft.steps=7", "data.max_operand=30"])
    assert (bench.PRACTICE["method"], bench.SFT["steps"], bench.DATA["params"]["max_operand"]) == ("kto", 7, 30)
    new_keys = (bench.settings_key("sft", bench.DATA, bench.SFT), bench.settings_key("practice", bench.PRACTICE))
    assert keys[0] != new_keys[0] and keys[1] != new_keys[1]
    with pytest.raises(ConfigError, match="'metod' is not a field of the practice config"):
        bench.apply_settings(["metod=kto"])
    with pytest.raises(ConfigError, match="KEY a practice field, sft.FIELD or data.PARAM"):
        bench.apply_settings(["steps"])
