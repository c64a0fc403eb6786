"""Atomic writes, content hashes, metrics logs."""

from __future__ import annotations

import os

import pytest

from slmkit import artifacts


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    artifacts.atomic_write_json(target, {"v": 1})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        artifacts.atomic_write_json(target, {"v": 2})
    assert artifacts.read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temp file left behind


def test_interrupted_dir_write_keeps_previous_folder(tmp_path):
    target = tmp_path / "model"
    with artifacts.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("good")
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(target) as tmp:
            (tmp / "weights").write_text("half")
            raise RuntimeError("killed mid-save")
    assert (target / "weights").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_replaces_folder(tmp_path):
    target = tmp_path / "model"
    for content in ("one", "two"):
        with artifacts.atomic_dir(target) as tmp:
            (tmp / "weights").write_text(content)
    assert (target / "weights").read_text() == "two"


def test_hash_path_changes_with_content(tmp_path):
    (tmp_path / "a").write_text("x")
    h1 = artifacts.hash_path(tmp_path)
    (tmp_path / "a").write_text("y")
    assert artifacts.hash_path(tmp_path) != h1
    assert artifacts.hash_input("org/model-id").startswith("id:")


def test_metrics_log_truncates_on_resume(tmp_path):
    log = artifacts.MetricsLog(tmp_path / "metrics.jsonl")
    for step in range(1, 5):
        log.log(step=step, loss=1.0 / step)
    log.truncate_after(2)
    assert [r["step"] for r in artifacts.read_metrics(tmp_path / "metrics.jsonl")] == [1, 2]


def test_read_json_corrupt_names_file(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{oops")
    with pytest.raises(Exception, match="x.json line 1: invalid JSON"):
        artifacts.read_json(bad)
