"""The ``encdec`` architecture: shape, shared embeddings, cache parity, Auto-class round trip, centred
positions, and parameter-matched pairs (``slmkit.models.pairs``)."""

from __future__ import annotations

import pytest
import torch

from slmkit.models.build import build, count_parameters, param_count
from slmkit.models.load import load_model, save_model
from slmkit.models.pairs import decoder_params, encdec_params, matched_pair, pair_params


@pytest.fixture(scope="module")
def trained_encdec(tokenizer, math_rows, tmp_path_factory):
    """A pico encdec trained briefly, so greedy outputs vary with the input (random models repeat one token)."""
    from slmkit.train.loop import TrainArgs, train
    from slmkit.train.sft import sft_job

    model = build("encdec", "pico", tokenizer=tokenizer, seed=0)
    cfg = type("C", (), {"prompt_format": "plain", "max_length": 128})()
    job = sft_job(model, tokenizer, math_rows[:400], None, cfg)
    args = TrainArgs(steps=60, batch_size=16, lr=1e-2, warmup_steps=5, max_length=128, log_every=100, seed=0)
    model, _ = train(model, job, args, tmp_path_factory.mktemp("encdec_run"), fingerprint="fp")
    return model.eval()


def test_shape_tying_and_special_tokens(tokenizer, encdec_model):
    from slmkit.train.batching import decoder_start

    cfg = encdec_model.config
    assert cfg.encoder.num_hidden_layers == 2 and cfg.decoder.num_hidden_layers == 1  # 2/3 : 1/3
    assert cfg.encoder.num_key_value_heads < cfg.encoder.num_attention_heads  # GQA
    assert cfg.encoder.attn_logit_softcapping is None and cfg.decoder.final_logit_softcapping is None
    assert cfg.dropout_rate == 0.0 and cfg.vocab_size == len(tokenizer)
    inner = encdec_model.model
    table = inner.decoder.embed_tokens.weight
    assert inner.encoder.embed_tokens.weight is table and encdec_model.lm_head.out_proj.weight is table
    assert decoder_start(encdec_model) == tokenizer.bos_token_id == cfg.decoder.bos_token_id


def test_no_rope_in_cross_attention():
    """The cross-attention module has no rotary call: its forward takes no position embeddings."""
    import inspect

    from transformers.models.t5gemma.modeling_t5gemma import T5GemmaCrossAttention

    params = inspect.signature(T5GemmaCrossAttention.forward).parameters
    assert "position_embeddings" not in params
    assert "rotary" not in inspect.getsource(T5GemmaCrossAttention.forward)


def test_cached_and_uncached_greedy_are_identical(trained_encdec, tokenizer):
    from slmkit.models.generate import pad_batch

    prompts = ["Tom has 3 apples and buys 4 more.\n", "A shop sells 12 pens each day for 5 days.\n"]
    ids, mask = pad_batch([tokenizer(p)["input_ids"] for p in prompts], tokenizer.pad_token_id, left=False)
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=24, do_sample=False,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    cached = trained_encdec.generate(use_cache=True, **kwargs)
    uncached = trained_encdec.generate(use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)
    assert len(set(cached[0, 1:].tolist())) > 3  # a real, varied continuation, not one repeated token


def test_cross_attention_kv_is_computed_once(trained_encdec, tokenizer):
    """After generation the cache holds decoder self-attention K/V per step and cross K/V of input length."""
    ids = torch.tensor([tokenizer("Tom has 3 apples.\n")["input_ids"]])
    out = trained_encdec.generate(input_ids=ids, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                                  return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    cache = out.past_key_values
    assert cache.cross_attention_cache.layers[0].keys.shape[-2] == ids.shape[1]
    assert cache.self_attention_cache.get_seq_length() == out.sequences.shape[1] - 1
    assert all(cache.is_updated.values())


def test_auto_class_round_trip(trained_encdec, tokenizer, tmp_path):
    from safetensors import safe_open
    from transformers import AutoConfig, AutoModelForSeq2SeqLM

    save_model(trained_encdec, tokenizer, tmp_path / "m")
    with safe_open(tmp_path / "m" / "model.safetensors", "pt") as f:
        names = list(f.keys())
    assert sum("embed_tokens" in n for n in names) == 1  # the shared table is stored once
    assert AutoConfig.from_pretrained(tmp_path / "m").model_type == "slmkit_encdec"
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "m")
    assert type(loaded) is type(trained_encdec)
    assert loaded.model.encoder.embed_tokens.weight is loaded.model.decoder.embed_tokens.weight
    for (n1, p1), (n2, p2) in zip(trained_encdec.state_dict().items(), loaded.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)
    ids = torch.tensor([tokenizer("Tom has 3 apples.\n")["input_ids"]])
    gen = dict(input_ids=ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert torch.equal(trained_encdec.generate(**gen), loaded.eval().generate(**gen))
    assert count_parameters(load_model(str(tmp_path / "m"))) == count_parameters(trained_encdec)


def test_centred_encoder_positions_are_equivalent(trained_encdec, tokenizer):
    """RoPE scores depend on m - n only, so the paper's centred encoder positions give the same encoding."""
    ids = torch.tensor([tokenizer("A shop sells 12 pens each day for 5 days. How many?\n")["input_ids"]])
    length = ids.shape[1]
    centred = (torch.arange(length) - (length - 1) // 2).unsqueeze(0)
    encoder = trained_encdec.get_encoder()
    with torch.no_grad():
        plain = encoder(input_ids=ids).last_hidden_state
        shifted = encoder(input_ids=ids, position_ids=centred).last_hidden_state
    assert torch.allclose(plain, shifted, atol=1e-5)
    assert not torch.allclose(plain, encoder(input_ids=ids.flip(1)).last_hidden_state.flip(1), atol=1e-3)


def test_overrides_and_errors(tokenizer):
    from slmkit.errors import ModelError

    model = build("encdec", "pico", tokenizer=tokenizer, overrides={"encoder_layers": 4, "decoder_layers": 2})
    assert len(model.model.encoder.layers) == 4 and len(model.model.decoder.layers) == 2
    with pytest.raises(ModelError, match="use one of"):
        build("encdec", "pico", overrides={"num_layers": 3})
    with pytest.raises(ModelError, match="at least 1"):
        build("encdec", "pico", overrides={"decoder_layers": 0})


@pytest.mark.parametrize("preset", ["pico", "tiny", "small", "base", "medium"])
def test_presets_are_parameter_matched(preset):
    dec, enc = param_count("decoder", preset), param_count("encdec", preset)
    assert abs(enc / dec - 1) <= 0.02


def test_closed_form_counts_match_models():
    from slmkit.models.encdec import PRESETS

    p = PRESETS["tiny"]
    expected = encdec_params(4096, 256, p["encoder_layers"], p["decoder_layers"], 8, 4, p["intermediate_size"])
    assert param_count("encdec", "tiny") == expected
    assert param_count("decoder", "tiny") == decoder_params(4096, 256, 4, 8, 4, 704)


@pytest.mark.parametrize("budget,vocab", [(80e6, 32000), (300e6, 32000), (5e6, 4096), (1e9, 50000)])
def test_matched_pair_within_two_percent(budget, vocab):
    dec, enc = matched_pair(budget, vocab)
    a, b = pair_params(dec, enc, vocab)
    assert abs(b / a - 1) <= 0.02 and abs(a / budget - 1) <= 0.1
    assert dec["hidden_size"] == enc["hidden_size"]
    assert dec["num_attention_heads"] == enc["num_attention_heads"]
    assert enc["encoder_layers"] > enc["decoder_layers"]
    with torch.device("meta"):  # the counts are those of the real models
        d = build("decoder", "small", vocab_size=vocab, overrides=dec)
        e = build("encdec", "small", vocab_size=vocab, overrides=enc)
    assert (count_parameters(d), count_parameters(e)) == (a, b)


def test_matched_pair_rejects_impossible_budget():
    from slmkit.errors import ModelError

    with pytest.raises(ModelError, match="no width"):
        matched_pair(1e5, 32000)
