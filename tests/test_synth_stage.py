"""The ``synth`` stage end to end: Orca-Math rounds with the rule teacher, MediFlow-style JSON instructions,
a real local model as teacher, resume after a kill, and its place in recipes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slmkit.backends import BACKENDS
from slmkit.data.tasks.math_word import generate, verify_solution
from slmkit.errors import ConfigError
from slmkit.synth.math_story import count_steps
from slmkit.synth.stage import Config, run

ROOT = Path(__file__).resolve().parents[1]


def _rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture
def fakes(monkeypatch):
    monkeypatch.setitem(BACKENDS, "scripted", "tests.synth_fakes:ScriptedClinical")
    monkeypatch.setitem(BACKENDS, "slow_rule", "tests.synth_fakes:SlowRuleMath")


def test_orca_math_rounds_make_harder_verified_rows_with_provenance(tmp_path):
    seeds = generate(30, seed=4, min_steps=1, max_steps=3)
    seed_file = tmp_path / "seeds.jsonl"
    seed_file.write_text("".join(json.dumps(r) + "\n" for r in seeds))
    held_out = tmp_path / "test.jsonl"  # one seed is also a test problem: its copies must go
    held_out.write_text(json.dumps(seeds[0]) + "\n")
    cfg = Config(seed_file=str(seed_file), test_file=str(held_out), decontaminate=[], keep_seeds=True,
                 edits_per_round=2, verifier=True)
    result = run(cfg, tmp_path / "run")
    rows = _rows(tmp_path / "run" / "train.jsonl")
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert result.metrics["rows"] == len(rows) == stats["rows"] > 2 * len(seeds)
    assert all(verify_solution(r["completion"], r["answer"]) for r in rows)
    synthetic = [r for r in rows if r["meta"]["synth"]["round"] > 0]
    assert stats["mean_steps_rows"] == pytest.approx(sum(count_steps(r["completion"]) for r in synthetic) / len(synthetic), abs=1e-3)
    assert stats["mean_steps_rows"] > stats["mean_steps_seeds"] + 1
    assert stats["rows_by_round"].keys() == {"0", "1", "2"}
    prov = synthetic[0]["meta"]["synth"]
    assert prov["roles"] == {"suggester": "rule_math", "editor": "rule_math", "solver": "rule_math", "verifier": "rule_math"}
    assert prov["rule_based"] is True and prov["verified_by"] == "reference"
    assert set(prov["prompt_hashes"]) == {"suggester", "editor", "solver", "verifier"} and prov["round"] in (1, 2)
    assert not any(r["prompt"] == seeds[0]["prompt"] for r in rows)
    assert stats["rejections"]["filter:contaminated"] >= 1  # at least the seed itself
    rejected = _rows(tmp_path / "run" / "rejected.jsonl")
    assert sum(stats["rejections"].values()) == len(rejected)
    assert "## synth (orca_math)" in (tmp_path / "run" / "report_section.md").read_text()


def test_seeds_it_cannot_read_are_rejected_and_counted(tmp_path):
    seed_file = tmp_path / "seeds.jsonl"
    seed_file.write_text(json.dumps({"prompt": "Janet's ducks lay 16 eggs per day. How many in a week?", "answer": "112"}) + "\n")
    run(Config(seed_file=str(seed_file), decontaminate=[], keep_seeds=True), tmp_path / "run")
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["rows"] == 0
    assert stats["rejections"] == {"solver:no_answer": 1, "suggester:no_suggestions": 1}


def test_agreement_without_reference(tmp_path):
    from slmkit.synth.orca_math import _verify

    a = {"solution": "1 + 1 = 2.\n#### 2", "answer": "2"}
    b = {"solution": "2 + 1 = 3.\n#### 3", "answer": "3"}
    assert _verify([a, b], None, 2) == (None, "verify:no_agreement")
    assert _verify([b, a, a], None, 2) == (a, "agreement")
    assert _verify([a, a], "3", 2) == (None, "verify:disagrees_with_reference")  # a reference overrules


def test_mediflow_validates_json_with_bounded_retry_and_counts_reasons(tmp_path, fakes):
    tasks = ["named_entity_recognition", "icd10_coding", "summarization", "triage_classification"]
    cfg = Config(pipeline="mediflow", backend={"kind": "scripted"}, n=8, tasks=tasks,
                 document_types=["discharge summary", "CT report"], output_formats=["json"], max_retries=2,
                 decontaminate=[], dedup=False, max_chars=0)
    run(cfg, tmp_path / "run")
    rows = _rows(tmp_path / "run" / "train.jsonl")
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    # every task x type cell once: NER and ICD recover on the retry, triage never answers in JSON
    assert stats["rows_by_task"] == {"icd10_coding": 2, "named_entity_recognition": 2, "summarization": 2}
    assert stats["rejections"] == {"responder:no_json_object": 2 + 2 * 3, "responder:retries_exhausted": 2,
                                   "responder:schema_pattern": 2}
    assert stats["retries_exhausted_rate"] == 0.25
    import jsonschema

    from slmkit.synth.mediflow import taxonomy

    for row in rows:
        jsonschema.validate(json.loads(row["completion"]), taxonomy()["tasks"][row["meta"]["task"]]["schema"])
        assert row["meta"]["synth"]["attempts"] == (1 if row["meta"]["task"] == "summarization" else 2)
        assert "JSON schema" in row["prompt"] and "Document:" in row["prompt"]


def test_mediflow_taxonomy_schemas_are_valid():
    import jsonschema

    from slmkit.synth.mediflow import taxonomy

    tax = taxonomy()
    assert len(tax["tasks"]) == 14 and len(tax["document_types"]) >= 40
    for task in tax["tasks"].values():
        jsonschema.Draft202012Validator.check_schema(task["schema"])


def test_a_local_model_runs_the_same_pipeline(tmp_path, decoder_model, tokenizer):
    from slmkit.models.load import save_model

    save_model(decoder_model, tokenizer, tmp_path / "teacher")
    cfg = Config(seed_task="math", n=3, rounds=1, backend={"kind": "local", "model": str(tmp_path / "teacher")},
                 max_new_tokens=8, batch_size=4, concurrency=1, decontaminate=[])
    run(cfg, tmp_path / "run")
    stats = json.loads((tmp_path / "run" / "stats.json").read_text())
    assert stats["items"] == 3 and stats["engine"]["calls"] == 3  # an untrained model suggests nothing usable
    assert sum(stats["rejections"].values()) == 3 and stats["engine"]["backends"] == [f"local:{tmp_path / 'teacher'}"]


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of seed_file"):
        run(Config(decontaminate=[]), tmp_path)
    with pytest.raises(ConfigError, match="agreement"):
        run(Config(seed_task="math", agreement=3, solver_samples=2), tmp_path)
    with pytest.raises(ConfigError, match="unknown role"):
        run(Config(seed_task="math", role_backends={"critic": {"kind": "rule_math"}}), tmp_path)
    with pytest.raises(ConfigError, match="unknown field"):
        run(Config(seed_task="math", templates={"solver": "Solve {problem} for {student}"}), tmp_path)
    with pytest.raises(ConfigError, match="unknown tasks"):
        run(Config(pipeline="mediflow", tasks=["poetry"]), tmp_path)


KILLED_RUN = """
import sys
from pathlib import Path
from slmkit.backends import BACKENDS
BACKENDS["slow_rule"] = "tests.synth_fakes:SlowRuleMath"
from slmkit.synth.stage import Config, run
run(Config(seed_task="math", n=40, edits_per_round=2, concurrency=4, batch_size=1, decontaminate=[],
           backend={{"kind": "slow_rule", "delay": {delay}}}), Path(sys.argv[1]))
"""


def test_a_killed_run_resumes_to_exactly_the_uninterrupted_rows(tmp_path, fakes):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLMKIT_QUIET": "1"}
    script = textwrap.dedent(KILLED_RUN.format(delay=0.01))
    marker = tmp_path / "stalled"  # 8 teacher calls per item: the run hangs with about 20 of 40 items done
    stalling = {**env, "SLMKIT_FAKE_STALL_AFTER": "160", "SLMKIT_FAKE_STALL_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "killed")], cwd=ROOT, env=stalling)
    journal = tmp_path / "killed" / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not marker.exists():
        time.sleep(0.02)
    time.sleep(0.5)  # let the main thread journal the items that finished before the stall
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(journal.read_text().splitlines()) - 1
    assert 14 <= done < 40 and not (tmp_path / "killed" / "train.jsonl").exists()
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "killed")], cwd=ROOT, env=env, check=True)
    run(Config(seed_task="math", n=40, edits_per_round=2, decontaminate=[], backend={"kind": "slow_rule"}),
        tmp_path / "straight")
    resumed = (tmp_path / "killed" / "train.jsonl").read_text()
    assert resumed == (tmp_path / "straight" / "train.jsonl").read_text() and len(resumed.splitlines()) > 80
    ids = [json.loads(line)["id"] for line in journal.read_text().splitlines()[1:]]
    assert sorted(set(ids)) == sorted(ids) and len(ids) == 40  # nothing journaled twice


def test_orca_math_synth_recipe_trains_on_its_synthetic_rows(tmp_path):
    from slmkit.cli import main

    overrides = ["data.n_train=12", "data.n_val=4", "data.n_test=6", "synth.decontaminate=[]", "sft.preset=pico",
                 "sft.steps=2", "sft.eval_every=2", "sft.checkpoint_every=2", "sft.max_length=256",
                 "exact_match.max_new_tokens=8"]
    assert main(["run", "orca_math_synth", *overrides, "--runs-dir", str(tmp_path)]) == 0
    folder = tmp_path / "orca_math_synth"
    synth = json.loads((folder / "01_synth" / "result.json").read_text())
    assert synth["metrics"]["rows"] > 12  # the seeds (kept) and their harder versions
    sft = (folder / "03_sft" / "config.yaml").read_text()
    assert str(folder / "01_synth" / "train.jsonl") in sft
    assert "RULE-BASED" in (folder / "report.md").read_text()


def test_synth_through_an_openai_compatible_server(tmp_path):
    pytest.importorskip("fastapi")
    from bench.synth_pipeline import start_server

    server, url = start_server(latency=0.0)
    try:
        cfg = Config(seed_task="math", n=4, rounds=1, decontaminate=[], batch_size=4, concurrency=1,
                     backend={"kind": "openai", "model": "teacher", "base_url": url, "concurrency": 4})
        run(cfg, tmp_path / "run")
    finally:
        server.kill()
    rows = _rows(tmp_path / "run" / "train.jsonl")
    assert len(rows) == 4 and all(verify_solution(r["completion"], r["answer"]) for r in rows)
    assert rows[0]["meta"]["synth"]["roles"]["editor"] == f"openai:teacher@{url}"
    assert rows[0]["meta"]["synth"]["rule_based"] is False  # the client cannot know what serves it


def test_orca_math_recipe_documents_a_working_synthetic_data_variant(tmp_path):
    """The commented variant in recipes/orca_math.yaml, applied to that recipe, wires synth rows into
    the tokenizer, SFT and both practice branches (so the comment cannot rot)."""
    import yaml

    from slmkit.cli import recipe_path
    from slmkit.recipe import resolve

    text = recipe_path("orca_math").read_text()
    block = text[text.index("# --- synthetic-data variant"):text.index("# --- end of variant")].splitlines()[1:]
    variant = yaml.safe_load("\n".join(line[1:] for line in block))
    recipe = yaml.safe_load(text)
    by_name = {e.get("name", e["stage"]): e for e in recipe["stages"]}
    for entry in variant:
        name = entry.get("name", entry["stage"])
        if name in by_name:
            by_name[name].update(entry)
        else:
            recipe["stages"].insert(1, entry)  # the synth stage follows data
    plan = resolve(recipe, {}, "orca_math variant", [], tmp_path)
    stages = {s.name: s for s in plan.stages}
    synth_rows = str(stages["synth"].folder / "train.jsonl")
    assert stages["synth"].config.seed_file == str(stages["data"].folder / "train.jsonl")
    assert stages["tokenizer"].config.train_file == synth_rows
    assert stages["sft"].config.train_file == synth_rows
    for name in ("practice_dpo", "practice_kto"):
        assert stages[name].config.train_file == synth_rows
        assert stages[name].config.val_file == str(stages["data"].folder / "val.jsonl")
