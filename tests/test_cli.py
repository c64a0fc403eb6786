"""The command line: fast import, help, list, show-config, stage verbs, recipe runs with reuse and --force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slmkit.cli import main

RECIPE = """\
schema_version: 1
name: demo
stages:
  - stage: data
    task: sorting
    params: {length: 8}
    n_train: 40
    n_val: 4
    n_test: 6
  - stage: tokenizer
    from: data
    vocab_size: 300
"""


def test_import_is_light():
    code = "import sys, slmkit, slmkit.cli, slmkit.config, slmkit.recipe; " \
           "print(json.dumps([m for m in ('torch', 'transformers') if m in sys.modules]))"
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("run", "validate", "show-config", "list", "quickstart", "sft"):
        assert verb in out
    from slmkit.cli import COMMANDS

    assert all(line.strip() for _, line in COMMANDS.values())  # every feature command says what it does in --help
    assert "OpenAI" in out and "mergekit" in out  # single words: argparse may wrap at a hyphen


def test_list_and_show_stage(capsys):
    assert main(["list", "tasks"]) == 0
    assert "math" in capsys.readouterr().out
    assert main(["show-config", "--stage", "sft"]) == 0
    out = capsys.readouterr().out
    assert "grad_accum" in out and "micro-batches per optimizer step" in out


def test_every_shipped_recipe_validates(capsys):
    from slmkit.commands import _shipped_recipes

    names = _shipped_recipes()
    assert "quickstart" in names
    for name in names:
        assert main(["validate", name]) == 0, name


def test_show_config_prints_resolved_paths(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    assert main(["show-config", str(recipe), "tokenizer.vocab_size=333", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "vocab_size: 333" in out and "00_data/train.jsonl" in out


def test_bad_recipe_is_one_clear_line(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("vocab_size", "vocab"))
    assert main(["validate", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "line 12" in err and "did you mean 'vocab_size'" in err


def test_run_reuses_and_force_redoes(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    runs = str(tmp_path / "runs")
    assert main(["run", str(recipe), "--runs-dir", runs]) == 0
    stage = Path(runs) / "demo" / "01_tokenizer"
    for name in ("config.yaml", "provenance.json", "result.json", "tokenizer/tokenizer.json"):
        assert (stage / name).exists(), name
    prov = json.loads((stage / "provenance.json").read_text())
    assert prov["packages"]["torch"] and "train_file" in prov["inputs"]
    first = (stage / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["run", str(recipe), "--runs-dir", runs]) == 0
    assert capsys.readouterr().out.count("reused") == 2
    assert (stage / "result.json").stat().st_mtime_ns == first
    assert main(["run", str(recipe), "--runs-dir", runs, "--force", "tokenizer"]) == 0
    out = capsys.readouterr().out
    assert "data: reused" in out and "tokenizer: running" in out
    # A changed config re-runs that stage and, since its output changes, everything downstream.
    assert main(["run", str(recipe), "--runs-dir", runs, "data.seed=7"]) == 0
    out = capsys.readouterr().out
    assert "data: running" in out and "tokenizer: running" in out
    assert (Path(runs) / "demo" / "report.md").exists()


def test_moved_runs_folder_is_reused_with_outputs_moved(tmp_path, capsys):
    """A runs folder moved elsewhere (rsync from a GPU box) is reused, not re-run, and points at itself."""
    import shutil

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path / "a")]) == 0
    shutil.move(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out.count("reused") == 2
    stage = tmp_path / "b" / "demo" / "01_tokenizer"
    result = json.loads((stage / "result.json").read_text())
    assert result["folder"] == str(stage) and result["outputs"]["tokenizer"] == str(stage / "tokenizer")
    # What the stage read still decides: changed data contents re-run the tokenizer in its new place.
    assert main(["run", str(recipe), "--runs-dir", str(tmp_path / "b"), "data.seed=3"]) == 0
    assert "tokenizer: running" in capsys.readouterr().out


def test_stage_identity_leaves_out_input_paths_only():
    from slmkit.recipe import _without_input_paths

    config = {"lr": 0.1, "teacher": {"model": "/x/t", "top_k": 8}, "models": [{"model": "/x/a", "weight": 1}]}
    hashes = {"teacher.model": "h1", "models.0.model": "h2", "absent.key": "h3"}
    assert _without_input_paths(config, hashes) == {
        "lr": 0.1, "teacher": {"model": "<input>", "top_k": 8}, "models": [{"model": "<input>", "weight": 1}]}
    assert config["teacher"]["model"] == "/x/t"  # the resolved config itself is untouched


def test_stage_verb_runs_one_stage(tmp_path, capsys):
    runs = str(tmp_path / "runs")
    assert main(["data", "task=math", "n_train=5", "n_val=1", "n_test=2", "--runs-dir", runs]) == 0
    assert "train_rows: 5" in capsys.readouterr().out
    rows = (Path(runs) / "data" / "00_data" / "train.jsonl").read_text().splitlines()
    assert len(rows) == 5
    assert main(["data", "tsk=math", "--runs-dir", runs]) == 2
    assert "did you mean 'task'" in capsys.readouterr().err


def test_cli_entry_point_help_is_fast():
    out = subprocess.run([sys.executable, "-m", "slmkit", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "quickstart" in out.stdout
