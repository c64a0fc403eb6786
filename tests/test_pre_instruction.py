"""Pre-instruction tuning as a data schedule of SFT (QA first, then QA + documents), and the eval table stage."""

from __future__ import annotations

import json

import pytest

from slmkit.train.sft import Config, pre_instruction_order, sft_job


def test_qa_first_then_qa_and_documents():
    order = pre_instruction_order(n_qa=10, n_all=16, qa_positions=40, seed=3)
    stream = order(0, 200)
    assert all(i < 10 for i in stream[:40])  # phase 1: QA rows only
    for epoch in range(4):  # phase 2: each epoch a permutation of all QA rows and documents
        assert sorted(stream[40 + 16 * epoch:40 + 16 * (epoch + 1)]) == list(range(16))
    # a pure function of the position: any split of the stream (as after a resume) gives the same order
    assert order(0, 37) + order(37, 100) + order(137, 63) == stream
    assert pre_instruction_order(10, 16, 40, seed=3)(0, 200) == stream
    assert pre_instruction_order(10, 16, 40, seed=4)(0, 200) != stream


def test_sft_job_appends_documents_and_schedules_them(tokenizer, decoder_model):
    qa = [{"prompt": "1 + 1 =", "completion": "#### 2"}] * 4
    docs = [{"prompt": "", "completion": "One plus one is two."}] * 2
    cfg = Config(schedule="pre_instruction", steps=10, batch_size=4, pre_instruction_fraction=0.25)
    job = sft_job(decoder_model, tokenizer, qa, None, cfg, docs)
    assert len(job.examples) == 6 and job.order is not None
    assert all(i < 4 for i in job.order(0, 10)) and max(job.order(10, 30)) >= 4
    mixed = sft_job(decoder_model, tokenizer, qa, None, Config(), docs)
    assert len(mixed.examples) == 6 and mixed.order is None
    # a document's whole text is a target (its prompt is the empty prompt)
    assert len(job.examples[4]["completion_ids"]) > len(job.examples[0]["completion_ids"])


def test_pre_instruction_stage_trains_and_needs_documents(tokenizer, tmp_path):
    from slmkit.data.loaders import write_rows
    from slmkit.data.tasks import get_documents, get_task
    from slmkit.errors import ConfigError
    from slmkit.models.tokenizer import save_tokenizer
    from slmkit.train.sft import run

    write_rows(tmp_path / "qa.jsonl", get_task("units")(40, seed=0))
    write_rows(tmp_path / "docs.jsonl", get_documents("units")(10, seed=0))
    save_tokenizer(tokenizer, tmp_path / "tok")
    base = dict(train_file=str(tmp_path / "qa.jsonl"), tokenizer=str(tmp_path / "tok"), preset="pico", steps=4,
                batch_size=4, max_length=96, schedule="pre_instruction")
    with pytest.raises(ConfigError, match="needs documents"):
        run(Config(**base), tmp_path / "a")
    write_rows(tmp_path / "general.jsonl", get_task("sorting")(30, seed=0, length=3))
    result = run(Config(**base, documents_file=str(tmp_path / "docs.jsonl"),
                        replay_file=str(tmp_path / "general.jsonl"), replay_rows=8), tmp_path / "b")
    assert result.metrics["replay_rows"] == 8 and result.metrics["train_rows"] == 48
    assert result.metrics["documents"] == 10 and (tmp_path / "b" / "model" / "model.safetensors").exists()


def test_replay_rows_join_the_qa_rows(tmp_path):
    from slmkit.data.loaders import write_rows
    from slmkit.data.tasks import get_task
    from slmkit.errors import ConfigError
    from slmkit.train.sft import read_replay

    general = get_task("sorting")(12, seed=0, length=3)
    write_rows(tmp_path / "general.jsonl", general)
    assert read_replay(Config(replay_file=str(tmp_path / "general.jsonl"), replay_rows=5)) == general[:5]
    assert read_replay(Config(replay_file=str(tmp_path / "general.jsonl"))) == general
    assert read_replay(Config()) == []
    with pytest.raises(ConfigError, match="replay_file is not"):
        read_replay(Config(replay_rows=3))
    with pytest.raises(ConfigError, match="replay_rows must be"):
        read_replay(Config(replay_file=str(tmp_path / "general.jsonl"), replay_rows=-1))


def test_exact_match_table(tokenizer, decoder_model, t5_model, tmp_path):
    from slmkit.data.loaders import write_rows
    from slmkit.data.tasks import get_task
    from slmkit.errors import ConfigError
    from slmkit.eval.table import Config as TableConfig
    from slmkit.eval.table import run
    from slmkit.models.load import save_model

    save_model(decoder_model, tokenizer, tmp_path / "dec")
    save_model(t5_model, tokenizer, tmp_path / "t5")
    write_rows(tmp_path / "units.jsonl", get_task("units")(3, seed=0))
    write_rows(tmp_path / "sorting.jsonl", get_task("sorting")(2, seed=0, length=3))
    cfg = TableConfig(models={"dec": str(tmp_path / "dec"), "t5": str(tmp_path / "t5")},
                      test_files={"units": str(tmp_path / "units.jsonl"), "sorting": str(tmp_path / "sorting.jsonl")},
                      max_new_tokens=6, baseline="t5")
    result = run(cfg, tmp_path / "out")
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert set(scores) == {"dec", "t5"} and scores["dec"]["units"]["n"] == 3
    assert set(result.metrics) == {"dec/units", "dec/sorting", "t5/units", "t5/sorting"}
    table = (tmp_path / "out" / "report_section.md").read_text()
    assert "| model | units | sorting |" in table and "| dec | " in table and "over **t5**" in table
    assert len((tmp_path / "out" / "predictions" / "dec__sorting.jsonl").read_text().splitlines()) == 2
    with pytest.raises(ConfigError, match="baseline 'x'"):
        run(TableConfig(models=cfg.models, test_files=cfg.test_files, baseline="x"), tmp_path / "bad")
