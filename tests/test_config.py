"""Strict config loading: every error names the file, the line and the key."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from slmkit.config import Where, field, from_dict, parse_override, parse_yaml
from slmkit.errors import ConfigError
from slmkit.recipe import resolve


@dataclass(frozen=True, kw_only=True)
class Inner:
    width: int = field(4, doc="a width")


@dataclass(frozen=True, kw_only=True)
class Sample:
    name: str = field(doc="required name")
    lr: float = field(1e-3, doc="learning rate")
    tags: list[str] = field(factory=list, doc="tags")
    inner: Inner = field(factory=Inner, doc="nested")
    mode: str | None = field(None, doc="optional")


def load(text: str):
    data, lines = parse_yaml(text, "cfg.yaml")
    return from_dict(Sample, data, Where("cfg.yaml", lines))


def test_valid_config_loads_and_converts():
    cfg = load("name: a\nlr: 3e-4\ntags: [x, y]\ninner: {width: 8}\n")
    assert cfg == Sample(name="a", lr=3e-4, tags=["x", "y"], inner=Inner(width=8))


def test_unknown_key_names_file_line_and_suggests():
    with pytest.raises(ConfigError, match=r"cfg\.yaml line 3: lrr: unknown key 'lrr' — did you mean 'lr'\?"):
        load("name: a\ntags: []\nlrr: 0.1\n")


def test_wrong_type_names_line_and_key():
    with pytest.raises(ConfigError, match=r"cfg\.yaml line 2: inner\.width: expected int, got str"):
        load("name: a\ninner: {width: wide}\n")


def test_nested_wrong_type_line():
    with pytest.raises(ConfigError, match=r"line 3: inner\.width: expected int"):
        load("name: a\ninner:\n  width: 1.5\n")


def test_missing_field_is_named():
    with pytest.raises(ConfigError, match=r"cfg\.yaml line 1: missing field 'name'"):
        load("lr: 0.1\n")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="expected int"):
        load("name: a\ninner: {width: true}\n")


def test_yaml_syntax_error_names_line():
    with pytest.raises(ConfigError, match=r"cfg\.yaml line 2: invalid YAML"):
        parse_yaml("a: 1\nb: c: d\n", "cfg.yaml")


def test_duplicate_key_is_an_error():
    with pytest.raises(ConfigError, match="line 2: duplicate key 'a'"):
        parse_yaml("a: 1\na: 2\n", "cfg.yaml")


def test_parse_override():
    assert parse_override("sft.lr=3e-4") == (["sft", "lr"], "3e-4")
    assert parse_override("data.params={a: 1}") == (["data", "params"], {"a": 1})
    with pytest.raises(ConfigError):
        parse_override("nokey")


RECIPE = """\
schema_version: 1
name: demo
stages:
  - stage: data
    task: math
    n_train: 10
    n_val: 2
    n_test: 3
  - stage: tokenizer
    from: data
    vocab_size: 300
"""


def plan(text: str = RECIPE, overrides=(), tmp="runs"):
    from pathlib import Path

    data, lines = parse_yaml(text, "r.yaml")
    return resolve(data, lines, "r.yaml", list(overrides), Path(tmp))


def test_recipe_overrides_apply():
    p = plan(overrides=["tokenizer.vocab_size=400", "data.seed=3"])
    assert p.stages[1].config.vocab_size == 400
    assert p.stages[0].config.seed == 3


def test_recipe_override_errors_name_the_command_line():
    with pytest.raises(ConfigError, match=r"command-line override.*vocab_size: expected int"):
        plan(overrides=["tokenizer.vocab_size=big"])
    with pytest.raises(ConfigError, match="no stage named 'tok'"):
        plan(overrides=["tok.vocab_size=1"])


def test_recipe_unknown_stage_key_names_line():
    bad = RECIPE.replace("    vocab_size: 300", "    vocab_sise: 300")
    with pytest.raises(ConfigError, match=r"r\.yaml line 11: stages\.1\.vocab_sise: unknown key .*vocab_size"):
        plan(bad)


def test_recipe_unknown_stage_type_suggests():
    with pytest.raises(ConfigError, match=r"line 9: stages\.1\.stage: unknown stage 'tokeniser' — did you mean 'tokenizer'"):
        plan(RECIPE.replace("stage: tokenizer", "stage: tokeniser"))


def test_recipe_from_wires_outputs_to_paths():
    p = plan()
    assert p.stages[1].config.train_file.endswith("00_data/train.jsonl")
    assert p.stages[1].upstream == {"train_file": ("data", "train_file")}


def test_recipe_from_must_be_earlier():
    bad = RECIPE.replace("from: data", "from: later")
    with pytest.raises(ConfigError, match="'later' is not an earlier stage"):
        plan(bad)


def test_recipe_explicit_field_wiring():
    text = RECIPE.replace("    from: data\n", "    train_file: {from: data.test_file}\n")
    assert plan(text).stages[1].config.train_file.endswith("00_data/test.jsonl")


EVAL_THEN_TOKENIZER = """\
schema_version: 1
name: demo
stages:
  - stage: eval
    model: some/model
    tasks: [gsm8k]
    store: STORE
  - stage: tokenizer
    train_file: {from: eval.results}
"""


@pytest.mark.parametrize("store", ["", "/elsewhere/results.sqlite"])
def test_recipe_from_follows_an_output_that_a_config_field_moves(store):
    """eval's ``store`` moves its results file; a later stage wired to it must read that file, not the default."""
    p = plan(EVAL_THEN_TOKENIZER.replace("STORE", repr(store)))
    wired = p.stages[1].config.train_file
    assert wired == (store or str(p.stages[0].folder / "results.sqlite"))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ""])
def test_run_names_cannot_escape(name):
    with pytest.raises(ConfigError, match="not a valid name"):
        plan(RECIPE.replace("name: demo", f"name: '{name}'"))
    with pytest.raises(ConfigError, match="not a valid name"):
        plan(RECIPE.replace("  - stage: data\n", f"  - stage: data\n    name: '{name}'\n"))


def test_schema_version_is_required():
    with pytest.raises(ConfigError, match="schema_version must be 1"):
        plan(RECIPE.replace("schema_version: 1\n", ""))
