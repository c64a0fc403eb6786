"""Load and save canonical rows: ``{"prompt", "completion", "answer", "meta"}``.

Reads ``.jsonl`` (one JSON object per line) and ``.csv`` (header row) files written by users,
and the GSM8K jsonl format (Cobbe et al. 2021, "Training Verifiers to Solve Math Word
Problems", arXiv 2110.14168) in place, e.g. ``shared/data/gsm8k/train.jsonl``; writes jsonl
atomically (temp file beside the target, then ``os.replace``) so an interrupted write never
leaves a half file. Every error is a ``DataError`` naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from slmkit.artifacts import atomic_write_text
from slmkit.errors import DataError

FIELDS: tuple[str, ...] = ("prompt", "completion", "answer", "meta")
# GSM8K's calculator annotations, e.g. "<<48/2=24>>": training targets should not teach
# a model to emit a tool syntax nothing at inference time will execute.
_CALCULATOR = re.compile(r"<<[^<>]*>>")
_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$")


def _where(path: str | os.PathLike[str], line: int) -> str:
    return f"{path} line {line}"


def _canonical(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate one raw record and return it as a canonical row."""
    if "prompt" not in raw:
        raise DataError(f"{where}: field 'prompt' is missing")
    if not isinstance(raw["prompt"], str):
        raise DataError(f"{where}: field 'prompt' must be a string")
    row: dict[str, Any] = {"prompt": raw["prompt"]}
    for field in ("completion", "answer"):
        value = raw.get(field, "")
        if value is None:
            value = ""
        # Numeric answers are common in hand-written jsonl ({"answer": 72}); accept them as
        # text, but not bools, which are almost always a mistake.
        if field == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise DataError(f"{where}: field '{field}' must be a string")
        row[field] = value
    meta = raw.get("meta")
    meta = {} if meta is None else meta
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be an object (a dict)")
    # Unknown columns are kept, under meta, so no information the user supplied is lost.
    extras = {k: v for k, v in raw.items() if k not in FIELDS}
    row["meta"] = {**extras, **meta}
    return row


def _open_text(path: Path) -> str:
    """Read a whole file as UTF-8, turning OS and decoding errors into DataError."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise DataError(f"{path}: file not found") from err
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from err
    except OSError as err:
        raise DataError(f"{path}: cannot be read ({err.strerror})") from err


def _jsonl_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line of a jsonl file.

    Lines end at "\n" only: ``str.splitlines`` would also split inside strings holding U+2028 or U+0085,
    which ``json.dumps(ensure_ascii=False)`` writes raw (GSM8K has them).
    """
    for number, line in enumerate(_open_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{_where(path, number)}: invalid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            kind = type(record).__name__
            raise DataError(f"{_where(path, number)}: expected a JSON object, got {kind}")
        yield number, record


def _csv_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, row)`` for each data row of a csv file with a header row."""
    reader = csv.DictReader(_open_text(path).splitlines(keepends=True))
    try:
        for record in reader:
            where = _where(path, reader.line_num)
            if None in record:
                raise DataError(f"{where}: more values than header columns")
            if isinstance(record.get("meta"), str):
                record = dict(record)
                record["meta"] = _csv_meta(record["meta"], where)
            yield reader.line_num, record
    except csv.Error as err:
        raise DataError(f"{_where(path, reader.line_num)}: malformed CSV ({err})") from err


def _csv_meta(text: str, where: str) -> dict[str, Any]:
    """A csv ``meta`` cell holds a JSON object (or is empty)."""
    if not text.strip():
        return {}
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: field 'meta' is not valid JSON ({err.msg})") from err
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be a JSON object")
    return meta


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read canonical rows from a ``.jsonl`` or ``.csv`` file.

    ``prompt`` is required; ``completion`` and ``answer`` default to ``""``, ``meta`` to ``{}``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        records = _jsonl_records(path)
    elif suffix == ".csv":
        records = _csv_records(path)
    else:
        raise DataError(f"{path}: unknown data format {suffix or '(no suffix)'!r}; "
                        "use .jsonl or .csv")
    return [_canonical(record, _where(path, number)) for number, record in records]


def write_rows(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> None:
    """Write canonical rows to a jsonl file atomically (the old file survives a crash)."""
    path = Path(path)
    lines = []
    for index, row in enumerate(rows, start=1):
        # Validate before writing so a bad row never replaces a good file.
        canonical = _canonical(row, f"row {index} for {path}")
        lines.append(json.dumps(canonical, ensure_ascii=False) + "\n")
    atomic_write_text(path, "".join(lines))


def _gsm8k_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Convert one GSM8K record (``question``, ``answer``) to a canonical row."""
    for field in ("question", "answer"):
        if not isinstance(record.get(field), str):
            raise DataError(f"{where}: field '{field}' must be a string")
    solution = _CALCULATOR.sub("", record["answer"])
    final = _GSM8K_FINAL.search(solution.strip().splitlines()[-1] if solution.strip() else "")
    if final is None:
        raise DataError(f"{where}: field 'answer' has no final '#### <number>' line")
    return {
        "prompt": record["question"],
        "completion": solution,
        "answer": final.group(1).replace(",", ""),
        "meta": {"source": "gsm8k"},
    }


def read_gsm8k(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read a GSM8K jsonl file: calculator annotations dropped, answer = number after ``####``."""
    path = Path(path)
    return [_gsm8k_row(record, _where(path, number)) for number, record in _jsonl_records(path)]


LOADERS: dict[str, Callable[[str | os.PathLike[str]], list[dict[str, Any]]]] = {
    "jsonl": read_rows,
    "csv": read_rows,
    "gsm8k": read_gsm8k,
}
