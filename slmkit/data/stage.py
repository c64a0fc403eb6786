"""The ``data`` stage: make train/val/test splits of canonical rows from a built-in task or from files.

A built-in task (``slmkit list tasks``) is generated once with one seed, so every prompt is distinct and
no test prompt appears in training; then it is cut into splits. A source file (jsonl, csv, GSM8K) is read
in place, shuffled with the seed and cut the same way; a source folder holding ``train.*`` and ``test.*``
keeps its own test split. With ``documents`` set, a built-in task also writes explanatory documents of its
domain (rows with an empty prompt, none of them about a val/test question) for pre-instruction tuning.
Writes ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` and ``documents.jsonl`` (empty unless asked).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.artifacts import Result
from slmkit.config import field
from slmkit.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Config:
    task: str | None = field(None, doc="built-in task generator to use (see slmkit list tasks)")
    params: dict[str, Any] = field(factory=dict, doc="keyword arguments of the task generator")
    source: str | None = field(None, doc="a jsonl/csv file, or a folder with train.* and test.*", input=True)
    loader: str = field("jsonl", doc="how to read source: jsonl, csv or gsm8k")
    n_train: int = field(1000, doc="training rows (0: all that remain, for a source)")
    n_val: int = field(100, doc="validation rows")
    n_test: int = field(200, doc="test rows (a source folder's own test split is cut to this; 0: all)")
    seed: int = field(0, doc="seed for generation and shuffling")
    documents: int = field(0, doc="also write this many explanatory documents of the task (documents.jsonl)")


OUTPUTS = {"train_file": "train.jsonl", "val_file": "val.jsonl", "test_file": "test.jsonl",
           "documents_file": "documents.jsonl"}


def make_splits(cfg: Config) -> dict[str, list[dict]]:
    """The three splits, as lists of canonical rows."""
    if (cfg.task is None) == (cfg.source is None):
        raise ConfigError("data: set exactly one of task (built-in generator) or source (files)")
    if cfg.task:
        from slmkit.data.tasks import get_task

        try:
            generator = get_task(cfg.task)
        except KeyError as err:
            raise ConfigError(f"data: {err.args[0]}") from None
        total = cfg.n_train + cfg.n_val + cfg.n_test
        try:
            rows = generator(total, cfg.seed, **cfg.params)
        except (TypeError, ValueError, KeyError) as err:
            raise ConfigError(f"data: bad params for task '{cfg.task}': {err}") from None
        return _cut(rows, cfg.n_train, cfg.n_val, cfg.n_test)
    return _from_source(cfg)


def _from_source(cfg: Config) -> dict[str, list[dict]]:
    from slmkit.data.loaders import LOADERS

    if cfg.loader not in LOADERS:
        raise ConfigError(f"data: unknown loader '{cfg.loader}' (known: {', '.join(LOADERS)})")
    read = LOADERS[cfg.loader]
    path = Path(cfg.source)
    if path.is_dir():
        train = read(_one(path, "train"))
        test = read(_one(path, "test"))
        random.Random(cfg.seed).shuffle(train)
        test = test[:cfg.n_test] if cfg.n_test else test
        val, train = train[:cfg.n_val], train[cfg.n_val:]
        return {"train": train[:cfg.n_train] if cfg.n_train else train, "val": val, "test": test}
    if not path.exists():
        raise ConfigError(f"data: source '{path}' does not exist")
    rows = read(path)
    random.Random(cfg.seed).shuffle(rows)
    n_train = cfg.n_train or max(0, len(rows) - cfg.n_val - cfg.n_test)
    return _cut(rows, n_train, cfg.n_val, cfg.n_test)


def _one(folder: Path, split: str) -> Path:
    found = sorted(p for p in folder.iterdir() if p.stem == split)
    if not found:
        raise ConfigError(f"data: {folder} has no {split}.* file")
    return found[0]


def _cut(rows: list[dict], n_train: int, n_val: int, n_test: int) -> dict[str, list[dict]]:
    if n_train + n_val + n_test > len(rows):
        raise ConfigError(f"data: asked for {n_train}+{n_val}+{n_test} rows but only {len(rows)} exist")
    # Test first, so that changing n_train never changes the test set.
    test = rows[:n_test]
    val = rows[n_test:n_test + n_val]
    train = rows[n_test + n_val:n_test + n_val + n_train]
    return {"train": train, "val": val, "test": test}


def make_documents(cfg: Config, held_out: list[dict]) -> list[dict]:
    """``cfg.documents`` documents of the task, none about a held-out (val/test) question."""
    if not cfg.documents:
        return []
    if not cfg.task:
        raise ConfigError("data: documents come from a built-in task; set task (or documents: 0)")
    from slmkit.data.tasks import get_documents

    try:
        make = get_documents(cfg.task)
        return make(cfg.documents, cfg.seed, exclude=frozenset(r["prompt"] for r in held_out), **cfg.params)
    except KeyError as err:
        raise ConfigError(f"data: {err.args[0]}") from None
    except (TypeError, ValueError) as err:
        raise ConfigError(f"data: bad params for the documents of task '{cfg.task}': {err}") from None


def run(cfg: Config, run_dir: Path) -> Result:
    from slmkit.data.loaders import write_rows

    splits = make_splits(cfg)
    splits["documents"] = make_documents(cfg, splits["val"] + splits["test"])
    for split, rows in splits.items():
        write_rows(run_dir / f"{split}.jsonl", rows)
    return Result(metrics={f"{k}_rows": len(v) for k, v in splits.items()})
