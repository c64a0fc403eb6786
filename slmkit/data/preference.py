"""Canonical preference data: pairs for DPO/IPO and labelled completions for KTO, read from jsonl.

Pairs are ``{"prompt", "chosen", "rejected"}`` (one preferred and one dispreferred completion of the same
prompt, Rafailov et al. 2023); KTO rows are ``{"prompt", "completion", "label"}`` with ``label`` true for a
desirable completion (Ethayarajh et al. 2024). Other keys are kept under ``meta``. A pair file can feed
KTO too: each pair becomes a desirable and an undesirable row, as TRL does for paired data. Every error is
a ``DataError`` naming the file, the line and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from slmkit.data.loaders import _jsonl_records
from slmkit.errors import DataError

PAIR_FIELDS = ("prompt", "chosen", "rejected")
KTO_FIELDS = ("prompt", "completion", "label")


def _strings(record: dict[str, Any], fields: tuple[str, ...], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in fields:
        if name not in record:
            raise DataError(f"{where}: field '{name}' is missing")
        if not isinstance(record[name], str):
            raise DataError(f"{where}: field '{name}' must be a string, got {type(record[name]).__name__}")
        row[name] = record[name]
    return row


def _meta(record: dict[str, Any], known: tuple[str, ...], where: str) -> dict[str, Any]:
    meta = record.get("meta") or {}
    if not isinstance(meta, dict):
        raise DataError(f"{where}: field 'meta' must be an object (a dict)")
    return {**{k: v for k, v in record.items() if k not in known and k != "meta"}, **meta}


def pair_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate one preference pair; chosen and rejected must differ (an equal pair teaches nothing)."""
    row = _strings(record, PAIR_FIELDS, where)
    if row["chosen"] == row["rejected"]:
        raise DataError(f"{where}: fields 'chosen' and 'rejected' are identical")
    return {**row, "meta": _meta(record, PAIR_FIELDS, where)}


def kto_row(record: dict[str, Any], where: str) -> dict[str, Any]:
    """Validate one labelled completion; ``label`` is a JSON boolean (0/1 accepted)."""
    row = _strings(record, ("prompt", "completion"), where)
    if "label" not in record:
        raise DataError(f"{where}: field 'label' is missing (true = desirable, false = undesirable)")
    label = record["label"]
    if isinstance(label, int) and not isinstance(label, bool) and label in (0, 1):
        label = bool(label)
    if not isinstance(label, bool):
        raise DataError(f"{where}: field 'label' must be true or false, got {label!r}")
    return {**row, "label": label, "meta": _meta(record, KTO_FIELDS, where)}


def _records(path: str | os.PathLike[str]) -> list[tuple[str, dict[str, Any]]]:
    path = Path(path)
    if path.suffix.lower() != ".jsonl":
        raise DataError(f"{path}: preference data must be a .jsonl file, got {path.suffix or '(no suffix)'!r}")
    records = [(f"{path} line {number}", record) for number, record in _jsonl_records(path)]
    if not records:
        raise DataError(f"{path}: no rows")
    return records


def read_pairs(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Preference pairs from a jsonl file."""
    return [pair_row(record, where) for where, record in _records(path)]


def read_kto(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Labelled completions from a jsonl of KTO rows, or of pairs (each split into two rows)."""
    records = _records(path)
    if "label" in records[0][1] or "chosen" not in records[0][1]:
        return [kto_row(record, where) for where, record in records]
    return pairs_to_kto([pair_row(record, where) for where, record in records])


def pairs_to_kto(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unpair: the chosen completion is desirable, the rejected one undesirable."""
    rows = []
    for pair in pairs:
        meta = pair.get("meta", {})
        rows.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True, "meta": meta})
        rows.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False, "meta": meta})
    return rows
