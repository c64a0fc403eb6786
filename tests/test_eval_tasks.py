"""Task files, data readers (shared data in place, hub path), few-shot pools and prompting strategies."""

from __future__ import annotations

import pytest

from slmkit.data.shared import shared_path
from slmkit.errors import ConfigError
from slmkit.eval.prompts import STRATEGIES, build_prompts, token_budget
from slmkit.eval.taskspec import EVAL_TASKS, TASK_DIR, load_items, load_spec

# Counts from each data set's SOURCE.md (ASDiv: numeric answers only).
SHARED_COUNTS = {"gsm8k": 1319, "gsm_hard": 1319, "svamp": 1000, "multiarith": 600, "addsub": 395,
                 "math500": 500, "arc_challenge": 1172, "commonsenseqa": 1221, "strategyqa": 2290}


def test_registry_matches_shipped_files():
    assert sorted(EVAL_TASKS.values()) == sorted(p.name for p in TASK_DIR.glob("*.yaml"))
    for name in EVAL_TASKS:
        spec = load_spec(name)
        assert spec.name == name and spec.version >= 1
    assert {f"sorting_{n}_{s}" for n in (8, 16, 32) for s in ("positive", "mixed")} <= set(EVAL_TASKS)


def test_bad_task_file_names_file_and_line(tmp_path):
    text = (TASK_DIR / "gsm8k.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("flexible: [last_number]", "flexible: [last_numbr]"))
    with pytest.raises(ConfigError, match=r"bad.yaml line \d+: flexible.0: unknown extractor 'last_numbr'"):
        load_spec(str(bad))
    bad.write_text(text + "temperture: 0\n")
    with pytest.raises(ConfigError, match="unknown key 'temperture'"):
        load_spec(str(bad))
    with pytest.raises(ConfigError, match="did you mean 'gsm8k'"):
        load_spec("gsm8")


@pytest.mark.parametrize("name", sorted(SHARED_COUNTS))
def test_shared_tasks_read_in_place(name):
    spec = load_spec(name)
    if not shared_path(spec.source.path).exists():
        pytest.skip(f"shared data {spec.source.path} is absent")
    items, pool = load_items(spec)
    assert items and all(it["answer"] for it in items)
    held = 0 if spec.fewshot_source else spec.fewshot_holdout
    # exact, except that a test item repeating a held-out exemplar's question is dropped (MultiArith)
    assert SHARED_COUNTS[name] - 10 <= len(items) + held <= SHARED_COUNTS[name]
    assert not {it["question"] for it in items} & {p["question"] for p in pool}
    if spec.answer_type == "choice":
        assert all(it["answer"] in {label for label, _ in it["choices"]} for it in items)


def test_builtin_tasks_and_asdiv():
    items, pool = load_items(load_spec("sorting_16_mixed"))
    assert len(items) == 300 and len(pool) == 100 and len(items[0]["answer"].split(",")) == 16
    items, pool = load_items(load_spec("math_builtin"))
    assert all(it["equations"] and it["equations"][-1][1] == it["answer"] for it in items)
    if shared_path("asdiv", "ASDiv.xml").exists():
        items, _ = load_items(load_spec("asdiv"))
        assert 2000 < len(items) < 2305 and all(float(it["answer"]) == float(it["answer"]) for it in items)


def test_hub_source_uses_the_same_converter(monkeypatch):
    datasets = pytest.importorskip("datasets")
    rows = [{"id": f"Mercury_{i}", "question": f"Which is a gas? ({i})", "answerKey": "B",
             "choices": {"text": ["rock", "steam", "ice"], "label": ["A", "B", "C"]}} for i in range(30)]
    calls = []

    def fake_load(hub_id, config, split):
        calls.append((hub_id, config, split))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    items, pool = load_items(load_spec("arc_challenge"), prefer="hub")
    assert calls == [("allenai/ai2_arc", "ARC-Challenge", "test")]
    assert len(items) == 5 and len(pool) == 25  # no train split: 25 held out as the few-shot pool
    assert items[0]["choices"] == [["A", "rock"], ["B", "steam"], ["C", "ice"]] and items[0]["answer"] == "B"


def test_strategies_share_exemplars_within_a_seed():
    spec = load_spec("math_builtin")
    items, pool = load_items(spec)
    items = items[:5]
    direct = build_prompts(spec, items, pool, "direct", 3, seed=0)
    assert direct[0] == items[0]["question"]
    k0 = build_prompts(spec, items, pool, "kshot_cot", 3, seed=0)
    k1 = build_prompts(spec, items, pool, "kshot_cot", 3, seed=1)
    prefix = k0[0][:-len(items[0]["question"])]
    assert all(p.startswith(prefix) for p in k0) and prefix.count("####") == 3
    assert k1[0] != k0[0] and "Let's think" in build_prompts(spec, items, pool, "cot", 3, 0)[0]
    assert "= " in prefix  # CoT exemplars carry the worked steps
    assert set(STRATEGIES) == {"direct", "cot", "kshot", "kshot_cot"}
    assert token_budget(spec, "cot") == spec.max_new_tokens_cot and token_budget(spec, "kshot", 7) == 7
    with pytest.raises(ConfigError, match="few-shot pool has only"):
        build_prompts(spec, items, pool[:2], "kshot", 3, 0)


def test_jsonl_with_unicode_line_separators_round_trips(tmp_path):
    from slmkit.artifacts import read_jsonl, write_jsonl
    from slmkit.data.loaders import read_rows, write_rows

    rows = [{"prompt": "a\u2028b\u0085c", "completion": "d", "answer": "1", "meta": {}}]
    write_rows(tmp_path / "r.jsonl", rows)
    assert read_rows(tmp_path / "r.jsonl") == rows
    write_jsonl(tmp_path / "j.jsonl", rows)
    assert read_jsonl(tmp_path / "j.jsonl") == rows
