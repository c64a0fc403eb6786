"""slmkit's merge: checks before any weight is read, any architecture (t5 too), sharded atomic output, chains."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from slmkit.cli import main
from slmkit.errors import ConfigError, ModelError
from slmkit.merge.config import MergeDoc, read_merge_file
from slmkit.merge.execute import merge
from slmkit.models.build import build
from slmkit.models.load import load_model, save_model


@pytest.fixture(scope="module")
def models(tokenizer, tmp_path_factory):
    """pico decoders (a base and two perturbed "experts"), a t5 pair, and a decoder of another width."""
    root = tmp_path_factory.mktemp("models")
    base = build("decoder", "pico", tokenizer=tokenizer, seed=0)
    paths = {"base": save_model(base, tokenizer, root / "base")}
    for i in (1, 2):
        torch.manual_seed(i)
        expert = build("decoder", "pico", tokenizer=tokenizer, seed=0)
        with torch.no_grad():
            for p in expert.parameters():
                p.add_(0.02 * torch.randn_like(p))
        paths[f"e{i}"] = save_model(expert, tokenizer, root / f"e{i}")
    for arch in ("t5", "encdec"):
        for i in (1, 2):
            model = build(arch, "pico", tokenizer=tokenizer, seed=i)
            paths[f"{arch}_{i}"] = save_model(model, tokenizer, root / f"{arch}_{i}")
    wide = build("decoder", "pico", tokenizer=tokenizer, overrides={"hidden_size": 96}, seed=0)
    paths["wide"] = save_model(wide, tokenizer, root / "wide")
    return {k: str(v) for k, v in paths.items()}


def write(tmp_path, conf, name="merge.yaml"):
    path = tmp_path / name
    text = "---\n".join(yaml.safe_dump(c, sort_keys=False) for c in conf) if isinstance(conf, list) \
        else yaml.safe_dump(conf, sort_keys=False)
    path.write_text(text)
    return path


def ties(models, **extra):
    return {"merge_method": "ties", "base_model": models["base"],
            "models": [{"model": models["e1"], "parameters": {"weight": 0.5, "density": 0.5}},
                       {"model": models["e2"], "parameters": {"weight": 0.5, "density": 0.5}}], **extra}


def state(path):
    return {k: v.clone() for k, v in load_model(path).state_dict().items()}


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if any weight is read: every check below must fire from headers and configs alone."""
    from slmkit.merge import execute

    def forbidden(*args, **kwargs):
        raise AssertionError("a weight was read before the config was checked")

    monkeypatch.setattr(execute.Readers, "get", forbidden)


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(merge_method="tie"), "did you mean 'ties'"),
    (lambda c: c["models"][0]["parameters"].update(densty=0.5), "has no parameter 'densty' — did you mean 'density'"),
    (lambda c: c["models"][0]["parameters"].update(density=1.5), "'density' of model"),
    (lambda c: c["models"][0]["parameters"].update(normalize=False), "set it under the top-level parameters"),
    (lambda c: c["models"][1]["parameters"].pop("weight"), "parameter 'weight' of model"),
    (lambda c: c.update(parameters={"lambda": [{"filter": "self-attn", "value": 2}]}), "filter 'self-attn' matches no"),
    (lambda c: c.update(slices=[]), "layer slices"),
    (lambda c: c.update(dtype="fp16"), "must be one of float32"),
    (lambda c: c.update(base_modle="x"), "did you mean 'base_model'"),
    (lambda c: c.pop("base_model"), "ties needs a base_model"),
    (lambda c: c["models"][1].update(model="/nonexistent/model"), "'/nonexistent/model' does not exist"),
])
def test_bad_configs_fail_before_any_weight_is_read(models, tmp_path, no_weights, change, message):
    conf = ties(models)
    change(conf)
    with pytest.raises((ConfigError, ModelError)) as err:
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")
    assert message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_error_names_the_tensor_and_line(models, tmp_path, no_weights):
    conf = ties(models)
    conf["models"][0]["parameters"]["density"] = [{"filter": "mlp", "value": 0.5}, {"value": [0.5, 1.4]}]
    with pytest.raises(ConfigError) as err:
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")
    text = str(err.value)
    assert "merge.yaml line 7" in text and "tensor 'model.layers.1." in text and models["e1"] in text


@pytest.mark.parametrize("other, message", [
    ("t5_1", "config field 'architectures'"),
    ("encdec_1", "config field 'architectures'"),
    ("wide", "config field '(head_dim|hidden_size)'"),
])
def test_architecture_mismatch_is_refused(models, tmp_path, no_weights, other, message):
    conf = ties(models)
    conf["models"][1]["model"] = models[other]
    with pytest.raises(ModelError, match=message) as err:
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")
    assert models[other] in str(err.value)


def test_vocabulary_and_tensor_mismatches_are_refused(models, tmp_path, no_weights):
    import shutil

    from safetensors.torch import load_file, save_file

    from slmkit.models.tokenizer import save_tokenizer, train_tokenizer

    other_tok = tmp_path / "other_tok"
    shutil.copytree(models["e2"], other_tok)
    tok = train_tokenizer(["completely different words here"] * 50, vocab_size=300)
    save_tokenizer(tok, tmp_path / "tok")
    shutil.copy(tmp_path / "tok" / "tokenizer.json", other_tok / "tokenizer.json")
    conf = ties(models)
    conf["models"][1]["model"] = str(other_tok)
    with pytest.raises(ModelError, match="tokenizer of .* differs .* token ids"):
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")

    bent = tmp_path / "bent"
    shutil.copytree(models["e2"], bent)
    weights = load_file(bent / "model.safetensors")
    weights["model.norm.weight"] = weights["model.norm.weight"][:-1].contiguous()
    save_file(weights, bent / "model.safetensors", metadata={"format": "pt"})
    conf["models"][1]["model"] = str(bent)
    with pytest.raises(ModelError, match=r"tensor 'model.norm.weight' has shape \[63\]"):
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")
    del weights["model.norm.weight"]
    save_file(weights, bent / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match="lacks 'model.norm.weight'"):
        merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")


def test_merge_output_is_a_complete_model(models, tmp_path):
    assert main(["merge", str(write(tmp_path, ties(models, out_dtype="bfloat16"))), str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "merge_config.yaml", "README.md"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    resolved = yaml.safe_load((out / "merge_config.yaml").read_text())["merges"][0]
    assert resolved["method_defaults"]["normalize"] is True and resolved["base_model"] == models["base"]
    assert "ties" in (out / "README.md").read_text() and "arxiv.org/abs/2306.01708" in (out / "README.md").read_text()
    model = load_model(str(out))
    assert next(model.parameters()).dtype == torch.bfloat16
    base = state(models["base"])
    assert any(not torch.equal(v.float(), base[k]) for k, v in model.state_dict().items())


def test_sharded_output_equals_single_file_output(models, tmp_path):
    conf = write(tmp_path, ties(models))
    merge(read_merge_file(conf), tmp_path / "one")
    merge(read_merge_file(conf), tmp_path / "many", shard_size="20KB")
    shards = sorted(p.name for p in (tmp_path / "many").glob("*.safetensors"))
    assert len(shards) > 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == set(shards)
    one, many = state(str(tmp_path / "one")), state(str(tmp_path / "many"))
    assert all(torch.equal(one[k], many[k]) for k in one)


@pytest.mark.parametrize("arch", ["t5", "encdec"])
def test_encoder_decoder_merge(models, tmp_path, arch):
    conf = {"merge_method": "linear", "models": [{"model": models[f"{arch}_1"], "parameters": {"weight": 1.0}},
                                                  {"model": models[f"{arch}_2"], "parameters": {"weight": 3.0}}]}
    merge(read_merge_file(write(tmp_path, conf)), tmp_path / "out")
    merged, a, b = state(str(tmp_path / "out")), state(models[f"{arch}_1"]), state(models[f"{arch}_2"])
    assert any("decoder" in k and "cross" in k.lower() or "EncDecAttention" in k for k in merged)
    for key in merged:
        assert torch.allclose(merged[key], 0.25 * a[key] + 0.75 * b[key], atol=1e-6), key


def test_failed_merge_leaves_previous_output_intact(models, tmp_path, monkeypatch):
    from slmkit.merge import execute

    conf = write(tmp_path, ties(models))
    merge(read_merge_file(conf), tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    calls = []

    def fail_later(plan, step, readers, generator):
        calls.append(step.spec.name)
        if len(calls) > 5:
            raise RuntimeError("disk full")
        return original(plan, step, readers, generator)

    original = execute.merge_tensor
    monkeypatch.setattr(execute, "merge_tensor", fail_later)
    with pytest.raises(RuntimeError, match="disk full"):
        merge(read_merge_file(conf), tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_chain_needs_names_and_earlier_references(models, tmp_path, no_weights):
    slerp = {"merge_method": "slerp", "base_model": models["base"], "parameters": {"t": 0.5},
             "models": [{"model": models["e1"]}]}
    with pytest.raises(ConfigError, match="distinct 'name'"):
        merge(read_merge_file(write(tmp_path, [slerp, slerp])), tmp_path / "out")
    later = {"name": "b", "merge_method": "linear", "models": [{"model": "a", "parameters": {"weight": 1.0}}]}
    with pytest.raises(ConfigError, match="'a' is this merge or a later one"):
        merge(read_merge_file(write(tmp_path, [later, {**slerp, "name": "a"}])), tmp_path / "out")


def test_layer_positions_follow_each_stack():
    from slmkit.merge.plan import layer_positions

    names = ["shared.weight", "encoder.block.0.layer.0.w", "encoder.block.3.layer.0.w", "decoder.block.0.w",
             "decoder.block.1.w", "model.layers.1.mlp.w", "model.layers.0.mlp.w", "model.layers.2.mlp.w"]
    pos = layer_positions(names)
    assert pos["shared.weight"] == 0.0 and pos["encoder.block.3.layer.0.w"] == 1.0
    assert pos["decoder.block.1.w"] == 1.0 and pos["model.layers.1.mlp.w"] == 0.5


def test_streamed_writer_is_read_by_safetensors(tmp_path):
    from safetensors import safe_open

    from slmkit.merge.writer import ShardWriter, TensorSpec, header_bytes, parse_size, shard_layout

    values = {"a": torch.randn(3, 5), "b": torch.arange(7, dtype=torch.int64), "c": torch.randn(2).bfloat16(),
              "d": torch.tensor(1.5)}
    specs = [TensorSpec(k, tuple(v.shape), {"a": "F32", "b": "I64", "c": "BF16", "d": "F32"}[k])
             for k, v in values.items()]
    layout = shard_layout(specs, shard_size=10_000)
    writer = ShardWriter(tmp_path, layout)
    for name, value in values.items():
        writer.write(name, value)
    writer.close()
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as handle:
        assert handle.metadata() == {"format": "pt"}
        for name, value in values.items():
            assert torch.equal(handle.get_tensor(name), value)
    assert len(header_bytes(specs)) % 8 == 0
    assert parse_size("2GB") == 2_000_000_000 and parse_size("1.5M") == 1_500_000 and parse_size(64) == 64
    with pytest.raises(Exception, match="plan expected"):
        ShardWriter(tmp_path, layout).write("b", values["b"])


def test_merge_stages_chain_in_a_recipe(models, tmp_path, capsys):
    recipe = {"schema_version": 1, "name": "chain", "stages": [
        {"stage": "merge", "name": "slerp1", "merge_method": "slerp", "base_model": models["base"],
         "models": [{"model": models["e1"]}], "parameters": {"t": 0.5}},
        {"stage": "merge", "name": "slerp2", "merge_method": "slerp", "base_model": models["base"],
         "models": [{"model": models["e2"]}], "parameters": {"t": 0.5}},
        {"stage": "merge", "name": "crumbs", "merge_method": "breadcrumbs", "base_model": models["base"],
         "parameters": {"density": 0.9, "gamma": 0.01},
         "models": [{"model": {"from": "slerp1"}, "parameters": {"weight": 1.0}},
                    {"model": {"from": "slerp2.model"}, "parameters": {"weight": 1.0}}]},
    ]}
    path = write(tmp_path, recipe, "recipe.yaml")
    runs = str(tmp_path / "runs")
    assert main(["run", str(path), "--runs-dir", runs]) == 0
    final = tmp_path / "runs" / "chain" / "02_crumbs"
    prov = json.loads((final / "provenance.json").read_text())
    assert set(prov["inputs"]) >= {"base_model", "models.0.model", "models.1.model"}
    assert yaml.safe_load((final / "model" / "merge_config.yaml").read_text())["merges"][0]["models"][0]["model"] \
        == str(tmp_path / "runs" / "chain" / "00_slerp1" / "model")
    capsys.readouterr()
    assert main(["run", str(path), "--runs-dir", runs]) == 0
    assert capsys.readouterr().out.count("reused") == 3
    # a changed upstream merge changes its output's content, so the merge that consumes it runs again
    assert main(["run", str(path), "--runs-dir", runs, "slerp1.parameters.t=0.3"]) == 0
    out = capsys.readouterr().out
    assert "slerp1: running" in out and "slerp2: reused" in out and "crumbs: running" in out


def test_merge_command_dry_run_and_errors(models, tmp_path, capsys, no_weights):
    with pytest.raises(SystemExit):
        main(["merge", "--help"])
    assert "mergekit-style" in capsys.readouterr().out
    assert main(["merge", str(write(tmp_path, ties(models))), str(tmp_path / "out"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ties into" in out and "checked (nothing written)" in out and not (tmp_path / "out").exists()
    assert main(["merge", str(tmp_path / "missing.yaml"), str(tmp_path / "out")]) == 2
    assert "cannot read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "merge" in capsys.readouterr().out
