"""The eval stage end to end through ``slmkit eval``: store, report section, plot, leaderboard, reuse."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from slmkit.cli import main
from eval_helpers import GoldJudge, one_thread  # noqa: F401  (one_thread is an autouse fixture)



def test_eval_command_end_to_end(tmp_path, monkeypatch, capsys, decoder_model, tokenizer):
    from slmkit.backends import BACKENDS
    from slmkit.models.load import save_model

    monkeypatch.setitem(BACKENDS, "gold", "eval_helpers:GoldJudge")
    save_model(decoder_model, tokenizer, tmp_path / "pico")
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps(r) + "\n" for r in [
        {"question": "q", "response": "so #### 5", "gold": "5", "human": 1},
        {"question": "q", "response": "5 apples, not 6", "gold": "5", "human": 1},
        {"question": "q", "response": "#### 6", "gold": "5", "human": 0},
        {"question": "q", "response": "6, I think", "gold": "5", "human": 0},
        {"question": "q", "response": "no idea", "gold": "5", "human": 0},
        {"question": "q", "response": "The answer is 5. ", "gold": "5", "human": 1}]))
    args = ["eval", "--models", str(tmp_path / "pico"), "--tasks", "math_builtin", "--strategies", "direct",
            "kshot", "--seeds", "0", "1", "--limit", "4", "--methods", "strict", "flexible", "judge", "cascade",
            "--judge", "kind=gold,name=gold", "--perturbations", "numeric", "--compress", "int8",
            "--human-labels", str(labels), "--runs-dir", str(tmp_path / "runs"), "max_new_tokens=6",
            "measure_memory=false", "k_shot=2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "math_builtin — flexible" in out and "pico@int8" in out and "report:" in out
    stage = tmp_path / "runs" / "eval" / "00_eval"
    db = sqlite3.connect(stage / "results.sqlite")
    # 2 models × (task + numeric variant) × 2 strategies × 2 seeds × 4 methods
    assert db.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2 * 2 * 2 * 2 * 4
    assert db.execute("SELECT COUNT(DISTINCT seed) FROM results").fetchone()[0] == 2
    assert db.execute("SELECT COUNT(*) FROM footprint").fetchone()[0] == 2
    agree = dict(db.execute("SELECT judge, agreement FROM agreement").fetchall())
    assert agree["gold"] == 1.0 and agree["flexible"] < 1.0 and set(agree) == {"strict", "flexible", "gold"}
    section = (stage / "report_section.md").read_text()
    for heading in ("math_builtin — cascade", "Robustness", "Evaluators vs human labels", "Footprint"):
        assert heading in section
    assert re.search(r"\d\.\d{3} ± \d\.\d{3} \[", section) and (stage / "accuracy_vs_footprint.png").exists()
    html = (tmp_path / "runs" / "eval" / "report.html").read_text()
    assert re.search(r"<td>\d\.\d{3} ± \d\.\d{3} \[", html) and "<h3>Robustness" in html
    assert "accuracy_vs_footprint" in html
    summary = json.loads((stage / "summary.json").read_text())
    assert {"rows", "robustness", "steps", "agreement", "footprint"} <= set(summary)
    assert main(args) == 0 and "reused" in capsys.readouterr().out
    assert main(["leaderboard", str(tmp_path / "runs"), "--method", "strict"]) == 0
    board = capsys.readouterr().out
    assert "math_builtin — strict" in board and "flexible" not in board.split("footprint")[0]


def test_eval_config_errors(tmp_path, capsys):
    assert main(["eval", "--models", "x", "--methods", "judge", "--runs-dir", str(tmp_path)]) == 2
    assert "need at least one entry in judges" in capsys.readouterr().err
    assert main(["eval", "--models", "x", "--strategies", "fewshot", "--runs-dir", str(tmp_path)]) == 2
    assert "unknown 'fewshot'" in capsys.readouterr().err
    assert main(["eval", "--list-tasks"]) == 0
    assert "sorting_32_mixed" in capsys.readouterr().out


def test_help_lists_eval_and_leaderboard(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "eval" in out and "leaderboard" in out and "exact_match" in out


def test_model_names_are_short_and_distinct():
    from slmkit.eval.stage import model_names

    assert model_names(["/r/a/model", "/r/b/model", "/r/c/tiny"]) == ["a/model", "b/model", "tiny"]
    assert model_names(["x/tiny", "y/tiny", "Qwen/Qwen2.5-0.5B"]) == ["x/tiny", "y/tiny", "Qwen2.5-0.5B"]
