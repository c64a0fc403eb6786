"""Prefix-cached greedy decoding gives the same texts as ``generate()`` (and falls back where it must)."""

from __future__ import annotations

from slmkit.models.generate import GenerateConfig, generate
from slmkit.models.prefix_decode import PrefixCachedDecoder, common_prefix

from eval_helpers import one_thread  # noqa: F401  (an autouse fixture)


def test_common_prefix_leaves_each_prompt_a_token():
    assert common_prefix([[1, 2, 3, 4], [1, 2, 3, 5]]) == 3
    assert common_prefix([[1, 2], [1, 2, 3]]) == 1 and common_prefix([[7]]) == 0 and common_prefix([]) == 0

def test_same_texts_as_generate(decoder_model, tokenizer, math_rows):
    shots = "\n\n".join(r["prompt"] + "\n" + r["completion"] for r in math_rows[:3])
    prompts = [shots + "\n\n" + r["prompt"] for r in math_rows[10:15]] + ["Short one?"]
    for stop in ([], ["\n", "5"]):
        cfg = GenerateConfig(max_new_tokens=8, batch_size=3, stop=stop)
        ours = generate(PrefixCachedDecoder(decoder_model, min_prefix=4), tokenizer, prompts, cfg)
        ref = generate(decoder_model, tokenizer, prompts, cfg, show_progress=False)
        assert [o.texts for o in ours] == [r.texts for r in ref]
        if stop:  # rows leave the batch when they stop; the budget is never exceeded
            assert all(o.n_tokens[0] <= 8 for o in ours)

def test_sampling_and_encdec_take_the_ordinary_path(t5_model, decoder_model, tokenizer):
    cfg = GenerateConfig(max_new_tokens=4, temperature=0.8, seed=3)
    prompts = ["Tom has 3 apples.", "Mia has 5 cards."]
    a = generate(PrefixCachedDecoder(decoder_model), tokenizer, prompts, cfg)
    b = generate(decoder_model, tokenizer, prompts, cfg, show_progress=False)
    assert [x.texts for x in a] == [y.texts for y in b]
    greedy = GenerateConfig(max_new_tokens=4)
    assert [x.texts for x in generate(PrefixCachedDecoder(t5_model), tokenizer, prompts, greedy)] == \
        [y.texts for y in generate(t5_model, tokenizer, prompts, greedy, show_progress=False)]
