"""The results store: one SQLite file holding every generation, prediction and score of an evaluation.

Tables (primary keys make every write idempotent, so a killed run resumes without duplicates):

- ``generations``: model × task × strategy × seed × item — prompt, raw output, token count, seconds and
  the decoding settings. Written in chunks as generation proceeds; a resumed run generates only the
  missing items, and an item whose prompt or settings changed since is generated again (replaced).
- ``predictions``: … × method — extracted answer, correctness and the raw → extracted ``trace`` (JSON:
  which extractor or judge produced what, normalised value, gold).
- ``results``: one row per model × task × strategy × method × seed — n, accuracy, parse failures.
- ``steps``: per generation, arithmetic claims checked (count, correct, first wrong step).
- ``footprint``: per model (variant) — parameters, disk size, RSS, latency.
- ``agreement``: per judge/method — agreement, κ and Spearman against human labels.

SQLite commits are atomic, so an interrupted write never leaves half a row.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
  model TEXT, task TEXT, strategy TEXT, seed INTEGER, item_id TEXT, prompt TEXT, output TEXT,
  n_tokens INTEGER, seconds REAL, gen TEXT, PRIMARY KEY (model, task, strategy, seed, item_id));
CREATE TABLE IF NOT EXISTS predictions (
  model TEXT, task TEXT, strategy TEXT, method TEXT, seed INTEGER, item_id TEXT, extracted TEXT,
  correct INTEGER, trace TEXT, PRIMARY KEY (model, task, strategy, method, seed, item_id));
CREATE TABLE IF NOT EXISTS results (
  model TEXT, task TEXT, strategy TEXT, method TEXT, seed INTEGER, n INTEGER, n_correct INTEGER,
  accuracy REAL, parse_failures INTEGER, parse_failure_rate REAL, judge_calls INTEGER, task_version INTEGER,
  updated REAL, PRIMARY KEY (model, task, strategy, method, seed));
CREATE TABLE IF NOT EXISTS steps (
  model TEXT, task TEXT, strategy TEXT, seed INTEGER, item_id TEXT, n_steps INTEGER, n_correct INTEGER,
  first_wrong INTEGER, answer_correct INTEGER, PRIMARY KEY (model, task, strategy, seed, item_id));
CREATE TABLE IF NOT EXISTS footprint (
  model TEXT PRIMARY KEY, base TEXT, variant TEXT, method TEXT, params INTEGER, disk_mb REAL,
  rss_mb REAL, ms_per_sample REAL, tokens_per_s REAL, note TEXT);
CREATE TABLE IF NOT EXISTS agreement (
  judge TEXT PRIMARY KEY, n INTEGER, agreement REAL, kappa REAL, kappa_low REAL, kappa_high REAL,
  spearman REAL, spearman_low REAL, spearman_high REAL, parse_failures INTEGER);
"""


class Store:
    """A thin typed wrapper over the SQLite file (one connection, WAL so readers never block)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def done_items(self, model: str, task: str, strategy: str, seed: int) -> dict[str, dict]:
        """Generations already stored for this cell: item id -> {prompt, output, n_tokens, seconds, gen}."""
        rows = self.db.execute("SELECT item_id, prompt, output, n_tokens, seconds, gen FROM generations WHERE "
                               "model=? AND task=? AND strategy=? AND seed=?", (model, task, strategy, seed))
        return {r[0]: {"prompt": r[1], "output": r[2], "n_tokens": r[3], "seconds": r[4], "gen": r[5]}
                for r in rows}

    def add_generations(self, model: str, task: str, strategy: str, seed: int, rows: Iterable[dict]) -> None:
        """Write a chunk of generations in one transaction (one row per key: never duplicated)."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO generations VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(model, task, strategy, seed, r["item_id"], r["prompt"], r["output"], r["n_tokens"],
                  r["seconds"], r["gen"]) for r in rows])

    def put_predictions(self, model: str, task: str, strategy: str, method: str, seed: int,
                        preds: list[dict], summary: dict[str, Any], task_version: int) -> None:
        """Replace the predictions and the result row of one cell in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?,?,?,?,?,?,?,?,?)",
                [(model, task, strategy, method, seed, p["item_id"], p["extracted"], int(p["correct"]),
                  json.dumps(p["trace"], ensure_ascii=False)) for p in preds])
            self.db.execute(
                "INSERT OR REPLACE INTO results VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (model, task, strategy, method, seed, summary["n"], summary["n_correct"], summary["accuracy"],
                 summary["parse_failures"], summary["parse_failure_rate"], summary.get("judge_calls", 0),
                 task_version, time.time()))

    def put_steps(self, model: str, task: str, strategy: str, seed: int, rows: list[dict]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO steps VALUES (?,?,?,?,?,?,?,?,?)",
                [(model, task, strategy, seed, r["item_id"], r["n_steps"], r["n_correct"], r["first_wrong"],
                  int(r["answer_correct"])) for r in rows])

    def put_row(self, table: str, row: dict[str, Any]) -> None:
        """Insert or replace one row of ``footprint`` or ``agreement`` given as a dict."""
        if table not in ("footprint", "agreement"):
            raise ValueError(f"put_row: table '{table}' is not footprint or agreement")
        cols = ", ".join(row)
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({', '.join('?' * len(row))})",
                            list(row.values()))

    def query(self, sql: str, args: tuple = ()) -> list[dict[str, Any]]:
        """Rows of a SELECT as dicts."""
        cur = self.db.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
