"""Model registry, build/load/save round trips, tokenizer, generation for both architecture kinds."""

from __future__ import annotations

import pytest
import torch

from slmkit.errors import ModelError
from slmkit.models.build import build, count_parameters, param_count
from slmkit.models.generate import GenerateConfig, generate
from slmkit.models.load import is_encoder_decoder, load_model, load_tokenizer, save_model


def test_presets_span_sizes():
    pico = param_count("decoder", "pico")
    assert pico < 1_000_000
    assert 25e6 < param_count("decoder", "small") < 40e6
    assert 90e6 < param_count("decoder", "base") < 110e6
    assert 300e6 < param_count("decoder", "medium") < 400e6


def test_unknown_arch_preset_override():
    with pytest.raises(ModelError, match="did you mean 'decoder'"):
        build("decodr", "pico")
    with pytest.raises(ModelError, match="no preset 'pica'.*did you mean 'pico'"):
        build("decoder", "pica")
    with pytest.raises(ModelError, match="override 'hidden' is not a field"):
        build("decoder", "pico", overrides={"hidden": 3})


def test_build_matches_tokenizer(tokenizer, decoder_model):
    assert decoder_model.config.vocab_size == len(tokenizer)
    assert decoder_model.config.eos_token_id == tokenizer.eos_token_id
    assert decoder_model.config.num_key_value_heads < decoder_model.config.num_attention_heads  # GQA


@pytest.mark.parametrize("arch", ["decoder", "t5", "encdec"])
def test_save_load_round_trip(arch, tokenizer, tmp_path):
    model = build(arch, "pico", tokenizer=tokenizer, seed=1)
    save_model(model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    loaded = load_model(str(tmp_path / "m"))
    assert is_encoder_decoder(loaded) == (arch != "decoder")
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    assert count_parameters(loaded) == count_parameters(model)


def test_load_missing_folder_is_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="config.json is missing"):
        load_model(str(tmp_path / "empty"))


def test_tokenizer_round_trip_and_digits(tokenizer):
    text = "Tom has 128 apples + 35 = 163.\n#### 163"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    digits = tokenizer.convert_ids_to_tokens(tokenizer("12345", add_special_tokens=False)["input_ids"])
    assert digits == list("12345")  # digits are split one by one
    assert tokenizer.pad_token_id is not None and tokenizer.eos_token_id != tokenizer.pad_token_id


def test_chat_template(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                         tokenize=False)
    assert text == "<s><|user|>\nhi\n<|assistant|>\n"


@pytest.mark.parametrize("fixture", ["decoder_model", "t5_model", "encdec_model"])
def test_generation_both_kinds(fixture, tokenizer, request):
    model = request.getfixturevalue(fixture)
    prompts = ["Tom has 3 apples.", "A much longer prompt about 12 pages and 7 more pages and more."]
    greedy = generate(model, tokenizer, prompts, GenerateConfig(max_new_tokens=8, batch_size=2))
    assert [g.prompt for g in greedy] == prompts
    assert all(len(g.texts) == 1 and 1 <= g.n_tokens[0] <= 8 for g in greedy)
    again = generate(model, tokenizer, prompts[::-1], GenerateConfig(max_new_tokens=8, batch_size=1))
    assert [g.texts for g in again[::-1]] == [g.texts for g in greedy]  # padding/batching do not matter
    sampled = generate(model, tokenizer, prompts, GenerateConfig(max_new_tokens=6, temperature=1.0, n=3, seed=5))
    assert all(len(g.texts) == 3 for g in sampled)
    same = generate(model, tokenizer, prompts, GenerateConfig(max_new_tokens=6, temperature=1.0, n=3, seed=5))
    assert [g.texts for g in same] == [g.texts for g in sampled]


def test_stop_strings_cut(decoder_model, tokenizer):
    out = generate(decoder_model, tokenizer, ["x"], GenerateConfig(max_new_tokens=12))[0].texts[0]
    if len(out) > 2:
        stop = out[1:3]
        cut = generate(decoder_model, tokenizer, ["x"], GenerateConfig(max_new_tokens=12, stop=[stop]))
        assert stop not in cut[0].texts[0] and out.startswith(cut[0].texts[0])


def test_hub_id_path_loads_local_folder(tokenizer, decoder_model, tmp_path, monkeypatch):
    """Loading by id goes through from_pretrained; a local folder with the same layout is the offline stand-in."""
    save_model(decoder_model, tokenizer, tmp_path / "org" / "model")
    monkeypatch.chdir(tmp_path)
    model = load_model("org/model")
    assert load_tokenizer("org/model").eos_token_id == tokenizer.eos_token_id
    assert model.config.vocab_size == decoder_model.config.vocab_size


def test_local_backend(tokenizer, decoder_model, tmp_path):
    from slmkit.backends import make_backend
    from slmkit.errors import ConfigError

    save_model(decoder_model, tokenizer, tmp_path / "m")
    backend = make_backend({"kind": "local", "model": str(tmp_path / "m")})
    out = backend.generate(["Tom has 3 apples."], GenerateConfig(max_new_tokens=4))
    assert len(out) == 1 and out[0].n_tokens[0] <= 4
    with pytest.raises(ConfigError, match="unknown"):
        make_backend({"kind": "nope"})
