"""CTranslate2 deployment: export of both kinds, fp32 parity with PyTorch, int8 agreement, the runtime behind
``generate()``, the backend kind, and clear errors for bad exports."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ctranslate2")

from slmkit.deploy import stage  # noqa: E402
from slmkit.deploy.ctranslate2 import CT2Model, export  # noqa: E402
from slmkit.errors import ModelError  # noqa: E402
from slmkit.models.generate import GenerateConfig, generate  # noqa: E402
from slmkit.models.load import load_model  # noqa: E402


@pytest.mark.parametrize("arch", ["decoder", "encdec"])
def test_fp32_export_is_token_identical(arch, trained_dirs, math_rows, tmp_path):
    from slmkit.data.loaders import write_rows

    write_rows(tmp_path / "test.jsonl", math_rows[-16:])
    cfg = stage.Config(model=str(trained_dirs[arch]), quantization="float32", test_file=str(tmp_path / "test.jsonl"),
                       check_prompts=16, max_new_tokens=24, batch_size=8, threads=1)
    result = stage.run(cfg, tmp_path / "run")
    assert result.metrics["sequence_agreement"] == 1.0 and result.metrics["token_agreement"] == 1.0
    records = [json.loads(line) for line in (tmp_path / "run" / "parity.jsonl").read_text().splitlines()]
    assert len(records) == 16 and len({tuple(r["pytorch"]) for r in records}) > 1  # varied, real outputs
    assert json.loads((tmp_path / "run" / "model" / "slmkit_export.json").read_text())["encoder_decoder"] == (
        arch == "encdec")
    assert "greedy agreement" in (tmp_path / "run" / "report_section.md").read_text()


def test_int8_agreement_is_reported_and_smaller(trained_dirs, tmp_path):
    cfg = stage.Config(model=str(trained_dirs["encdec"]), quantization="int8", check_prompts=8, max_new_tokens=16,
                       threads=1)
    metrics = stage.run(cfg, tmp_path / "int8").metrics
    assert 0.0 <= metrics["sequence_agreement"] <= 1.0 and 0.0 <= metrics["token_agreement"] <= 1.0
    fp32 = export(str(trained_dirs["encdec"]), tmp_path / "fp32", "float32")
    assert (tmp_path / "int8" / "model" / "model.bin").stat().st_size < (fp32 / "model.bin").stat().st_size


def test_runtime_behind_generate(trained_dirs, tokenizer, tmp_path):
    out = export(str(trained_dirs["encdec"]), tmp_path / "ct2", "float32")
    runtime, model = CT2Model(out, threads=1), load_model(str(trained_dirs["encdec"]))
    prompts = ["Tom has 3 apples and buys 4 more.", "A shop sells 12 pens each day for 5 days."]
    cfg = GenerateConfig(max_new_tokens=20, batch_size=2)
    ours, theirs = generate(model, tokenizer, prompts, cfg), generate(runtime, tokenizer, prompts, cfg)
    assert [g.texts for g in ours] == [g.texts for g in theirs]
    assert [g.n_tokens for g in ours] == [g.n_tokens for g in theirs]
    sampled = generate(runtime, tokenizer, prompts, GenerateConfig(max_new_tokens=8, temperature=1.0, n=3, seed=2))
    again = generate(runtime, tokenizer, prompts, GenerateConfig(max_new_tokens=8, temperature=1.0, n=3, seed=2))
    assert all(len(g.texts) == 3 for g in sampled) and [g.texts for g in sampled] == [g.texts for g in again]


def test_backend_kind(trained_dirs, tmp_path):
    from slmkit.backends import make_backend

    out = export(str(trained_dirs["decoder"]), tmp_path / "ct2", "int8")
    backend = make_backend({"kind": "ctranslate2", "model": str(out), "threads": 1})
    gens = backend.generate(["Tom has 3 apples."], GenerateConfig(max_new_tokens=6))
    assert len(gens) == 1 and 1 <= gens[0].n_tokens[0] <= 6


def test_bad_exports_fail_clearly(trained_dirs, tokenizer, tmp_path):
    import shutil

    from transformers import GPTNeoConfig

    unsupported = tmp_path / "neo"
    GPTNeoConfig(num_layers=1, hidden_size=8, num_heads=2, attention_types=[[["global"], 1]]).save_pretrained(unsupported)
    (unsupported / "model.safetensors").write_bytes(b"")
    tokenizer.save_pretrained(unsupported)
    with pytest.raises(ModelError, match="no converter for GPTNeoConfig"):
        export(str(unsupported), tmp_path / "out")
    no_weights = tmp_path / "no_weights"
    shutil.copytree(trained_dirs["decoder"], no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="weights file model.safetensors .* is missing"):
        export(str(no_weights), tmp_path / "out")
    with pytest.raises(ModelError, match="config.json is missing"):
        export(str(tmp_path), tmp_path / "out")
    with pytest.raises(ModelError, match="unknown quantization 'int3'"):
        export(str(trained_dirs["decoder"]), tmp_path / "out", "int3")
    with pytest.raises(ModelError, match="not a CTranslate2 export of slmkit: slmkit_export.json is missing"):
        CT2Model(trained_dirs["decoder"])
    assert not (tmp_path / "out").exists()  # nothing half-written
