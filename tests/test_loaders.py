"""Tests for reading and writing canonical rows (jsonl, csv, GSM8K) and atomic writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from slmkit.data.loaders import LOADERS, read_gsm8k, read_rows, write_rows
from slmkit.errors import DataError, SlmkitError

DATA_ROOT = Path(os.environ.get("SLMKIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

ROWS = [
    {"prompt": "What is 2 + 3?", "completion": "2 + 3 = 5.\n#### 5", "answer": "5",
     "meta": {"task": "math", "steps": 1}},
    {"prompt": "Sort: 3, 1, 2 – ünïcode", "completion": "", "answer": "", "meta": {}},
]


def test_round_trip_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "rows.jsonl"
    write_rows(path, ROWS)
    assert read_rows(path) == ROWS
    assert read_rows(str(path)) == ROWS
    assert len(path.read_text(encoding="utf-8").splitlines()) == len(ROWS)


def test_optional_fields_default_and_blank_lines_skipped(tmp_path: Path) -> None:
    path = tmp_path / "min.jsonl"
    path.write_text('{"prompt": "hi"}\n\n   \n{"prompt": "yo", "answer": 72, "source": "x"}\n')
    assert read_rows(path) == [
        {"prompt": "hi", "completion": "", "answer": "", "meta": {}},
        {"prompt": "yo", "completion": "", "answer": "72", "meta": {"source": "x"}},
    ]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a"}\n\n{"prompt": "b",\n')
    with pytest.raises(DataError) as info:
        read_rows(path)
    message = str(info.value)
    assert message.startswith(f"{path} line 3:")
    assert "invalid JSON" in message


def test_missing_or_wrong_prompt_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"prompt": "ok"}\n{"completion": "no prompt"}\n')
    with pytest.raises(DataError, match=re.escape(f"{path} line 2: field 'prompt' is missing")):
        read_rows(path)
    path.write_text('{"prompt": 7}\n')
    with pytest.raises(DataError, match=re.escape(f"{path} line 1: field 'prompt' must be a string")):
        read_rows(path)
    path.write_text('{"prompt": "p", "meta": [1]}\n')
    with pytest.raises(DataError, match="field 'meta'"):
        read_rows(path)


def test_errors_are_slmkit_errors_and_unknown_suffix_is_refused(tmp_path: Path) -> None:
    assert issubclass(DataError, SlmkitError)
    with pytest.raises(DataError, match="file not found"):
        read_rows(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match=r"\.parquet"):
        read_rows(tmp_path / "rows.parquet")


def test_csv_with_header(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(
        'prompt,completion,answer,meta,split\n'
        '"Add 1, 2","1 + 2 = 3.\n#### 3",3,"{""task"": ""math""}",train\n'
        'Plain,,,,test\n',
        encoding="utf-8",
    )
    assert read_rows(path) == [
        {"prompt": "Add 1, 2", "completion": "1 + 2 = 3.\n#### 3", "answer": "3",
         "meta": {"split": "train", "task": "math"}},
        {"prompt": "Plain", "completion": "", "answer": "", "meta": {"split": "test"}},
    ]


def test_csv_without_prompt_column_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("question,answer\nWhat?,4\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 2: field 'prompt' is missing")):
        read_rows(path)


def test_gsm8k_format_strips_annotations_and_commas(tmp_path: Path) -> None:
    path = tmp_path / "gsm8k.jsonl"
    record = {"question": "How many?",
              "answer": "She sold 48/2 = <<48/2=24>>24.\nThen 24*50 = <<24*50=1200>>1200.\n#### 1,200"}
    path.write_text(json.dumps(record) + "\n")
    assert read_gsm8k(path) == [{
        "prompt": "How many?",
        "completion": "She sold 48/2 = 24.\nThen 24*50 = 1200.\n#### 1,200",
        "answer": "1200",
        "meta": {"source": "gsm8k"},
    }]
    path.write_text(json.dumps({"question": "q", "answer": "no final line"}) + "\n")
    with pytest.raises(DataError, match=re.escape(f"{path} line 1: field 'answer'")):
        read_gsm8k(path)


def test_gsm8k_real_train_split() -> None:
    train = DATA_ROOT / "gsm8k" / "train.jsonl"
    if not train.is_file():
        pytest.skip(f"GSM8K not found at {train} (set SLMKIT_DATA to the shared data folder)")
    rows = read_gsm8k(train)
    assert len(rows) == 7473
    assert not any("<<" in row["completion"] or ">>" in row["completion"] for row in rows)
    assert all(re.fullmatch(r"-?\d+(\.\d+)?", row["answer"]) for row in rows)
    assert all(row["completion"].rstrip().splitlines()[-1].startswith("####") for row in rows)


def test_loaders_registry() -> None:
    assert LOADERS == {"jsonl": read_rows, "csv": read_rows, "gsm8k": read_gsm8k}


def test_interrupted_write_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "rows.jsonl"
    write_rows(path, ROWS[:1])
    before = path.read_bytes()

    def crash(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        write_rows(path, ROWS)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no temp file left


def test_invalid_row_never_replaces_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_rows(path, ROWS)
    before = path.read_bytes()
    with pytest.raises(DataError, match="field 'prompt'"):
        write_rows(path, [ROWS[0], {"completion": "x"}])
    assert path.read_bytes() == before
