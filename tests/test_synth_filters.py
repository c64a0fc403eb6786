"""Length, exact/near-duplicate and contamination filters, and the evaluation sets they protect."""

from __future__ import annotations

import pytest

from slmkit.synth.filters import FilterSettings, NearDuplicates, NgramIndex, apply_filters, words

GSM = ("Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
       "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck "
       "egg. How much in dollars does she make every day at the farmers' market?")


def _row(prompt, completion="#### 1"):
    return {"prompt": prompt, "completion": completion, "answer": "1", "meta": {}}


def test_ngram_coverage_flags_copies_not_shared_phrases():
    index = NgramIndex([GSM, "Tiny."], n=13)
    assert index.overlap(GSM.upper().replace(".", " .")) [0] == 1.0  # case, punctuation and spacing do not hide it
    copied = "A new problem. " + GSM.replace("$2", "$3")
    assert index.overlap(copied)[0] > 0.8  # one changed number leaves most of the item covered
    one_phrase = "Ali sells the remainder at the farmers' market daily for $2 per fresh duck egg. How many eggs?"
    cover, item = index.overlap(one_phrase)
    assert 0 < cover < 0.5 and item == 0
    assert index.overlap("Completely unrelated text about trains and stations.")[0] == 0.0


def test_short_evaluation_items_match_as_a_whole():
    index = NgramIndex(["What is 7 times 8?"], n=13)
    assert index.overlap("Quick: what is 7 times 8? Explain.")[0] == 1.0
    assert index.overlap("What is 7 times 9?")[0] == 0.0


def test_near_duplicates_by_minhash():
    near = NearDuplicates(threshold=0.8)
    base = " ".join(f"w{i}" for i in range(60))
    assert not near.seen("a", base)
    assert near.seen("b", base.replace("w30", "changed"))  # one word of sixty
    assert not near.seen("c", " ".join(f"v{i}" for i in range(60)))
    # the estimate follows the true Jaccard similarity of the shingle sets
    m1, m2 = near.minhash(base), near.minhash(" ".join(f"w{i}" for i in range(30)) + " " + " ".join(f"v{i}" for i in range(30)))
    assert m1.jaccard(m2) == pytest.approx(26 / 86, abs=0.12)


def test_apply_filters_keeps_the_first_and_names_each_reason():
    index = NgramIndex([GSM], n=13)
    long = "x" * 1801
    rows = [_row("Tom has 3 apples. How many?"), _row("tom has 3   APPLES. How many?"), _row("Some other problem here?", long),
            _row(GSM), _row("A fresh question about 9 boats and 4 oars?")]
    kept, rejected, counts = apply_filters(rows, FilterSettings(max_chars=1800), index)
    assert [r["prompt"] for r in kept] == [rows[0]["prompt"], rows[4]["prompt"]]
    assert [r["reason"] for r in rejected] == ["filter:duplicate", "filter:too_long", "filter:contaminated"]
    assert counts == {"filter:duplicate": 1, "filter:too_long": 1, "filter:contaminated": 1}
    kept, _, _ = apply_filters(rows, FilterSettings(max_chars=0, dedup=False), None)
    assert len(kept) == 5


def test_words_fold_case_and_punctuation():
    assert words("It's $2,000!") == ["it", "s", "2", "000"]


def test_evaluation_sources(tmp_path):
    from slmkit.data.loaders import write_rows
    from slmkit.errors import ConfigError
    from slmkit.synth.sources import SOURCES, eval_texts

    held_out = tmp_path / "test.jsonl"
    write_rows(held_out, [{"prompt": "Held out question one?"}, {"prompt": "Held out question two?"}])
    texts, sizes, missing = eval_texts(["math"], [str(held_out)])
    assert sizes == {"math": 200, str(held_out): 2} and len(texts) == 202 and not missing
    with pytest.raises(ConfigError, match="unknown source 'gsm9k'"):
        eval_texts(["gsm9k"])
    from slmkit.data.shared import shared_data_dir

    if not (shared_data_dir() / "gsm8k").exists():
        pytest.skip("shared data folder absent: benchmark sources not checked")
    texts, sizes, missing = eval_texts(["eval"])
    assert set(sizes) | set(missing) == set(SOURCES) and not missing
    assert sizes["gsm8k"] == 1319 and sizes["svamp"] == 1000 and sizes["asdiv"] == 2305
    assert GSM.replace("'", "\u2019", 1) in texts
