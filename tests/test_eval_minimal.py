"""Minimal exact-match evaluation: extraction, normalisation and the stage on a tiny model."""

from __future__ import annotations

from slmkit.eval.extractors import extract_hash, is_correct, normalize


def test_extract_hash():
    assert extract_hash("a\n#### 42") == "42"
    assert extract_hash("#### 1\nmore\n#### 7 apples\nx") == "7 apples"
    assert extract_hash("no marker") is None
    assert extract_hash("####   ") is None


def test_normalize_numbers_and_lists():
    assert normalize("1,000") == normalize("1000.0") == normalize("$1000") == "1000"
    assert normalize("2.50") == "2.5"
    assert normalize("-3, 5,  12") == "-3, 5, 12"
    assert is_correct("$18", "18") and not is_correct(None, "18") and not is_correct("17", "18")


def test_exact_match_stage(tmp_path, tokenizer, decoder_model):
    from slmkit.artifacts import read_jsonl
    from slmkit.data.loaders import write_rows
    from slmkit.eval import exact_match
    from slmkit.models.load import save_model

    save_model(decoder_model, tokenizer, tmp_path / "m")
    write_rows(tmp_path / "t.jsonl", [{"prompt": "1 + 1?", "answer": "2"}, {"prompt": "2 + 2?", "answer": "4"}])
    cfg = exact_match.Config(model=str(tmp_path / "m"), test_file=str(tmp_path / "t.jsonl"), max_new_tokens=4)
    result = exact_match.run(cfg, tmp_path)
    assert result.metrics["n"] == 2 and 0 <= result.metrics["accuracy"] <= 1
    preds = read_jsonl(tmp_path / "predictions.jsonl")
    assert [p["gold"] for p in preds] == ["2", "4"] and all("output" in p for p in preds)
