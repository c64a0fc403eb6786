"""Readers that turn each benchmark's own file format into evaluation items.

An item is ``{"id", "question", "answer", "solution", "choices", "equations", "meta"}``: ``solution`` is
a worked rationale where the data set has one (used by k-shot CoT exemplars and step checking),
``choices`` a list of ``[label, text]`` for multiple choice, ``equations`` the ``[expression, result]``
chain that computes the answer where the data set gives one (GSM8K calculator annotations, SVAMP,
MultiArith/AddSub, ASDiv formulas, the built-in math task) — perturbations recompute answers from it.

Files are read in place from the shared data folder (formats in each folder's SOURCE.md); a hub id is
the alternative source (``datasets.load_dataset``, network needed). Both paths go through the same
per-record converter. Reads only; every error is a ``DataError`` naming the file and record.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

from slmkit.errors import DataError

_CALC = re.compile(r"<<([^<>=]*)=([^<>]*)>>")


def _item(idx: str, question: str, answer: Any, **extra: Any) -> dict[str, Any]:
    item = {"id": str(idx), "question": question.strip(), "answer": _num_text(answer), "solution": "",
            "choices": [], "equations": [], "meta": {}}
    item.update(extra)
    return item


def _num_text(value: Any) -> str:
    """18.0 -> "18", 2.5 -> "2.5"; strings pass through stripped."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value).strip()


def gsm8k(rec: dict, idx: int) -> dict[str, Any]:
    answer = rec["answer"]
    body, _, final = answer.rpartition("####")
    equations = [[e.strip(), r.strip()] for e, r in _CALC.findall(body)]
    solution = " ".join(_CALC.sub("", body).split())
    return _item(idx, rec["question"], final.strip().replace(",", ""), solution=solution,
                 equations=equations)


def gsm_hard(rec: dict, idx: int) -> dict[str, Any]:
    return _item(idx, rec["input"], float(rec["target"]))


def svamp(rec: dict, idx: int) -> dict[str, Any]:
    question = f"{rec['Body'].strip().rstrip('.')}. {rec['Question'].strip()}"
    expr, answer = rec["Equation"].strip(), float(rec["Answer"])
    return _item(rec.get("ID", idx), question, answer, equations=[[expr, _num_text(answer)]],
                 solution=f"{_tidy(expr)} = {_num_text(answer)}.", meta={"type": rec.get("Type")})


def _tidy(expr: str) -> str:
    """"( 76.0 - 25.0 )" -> "76 - 25"."""
    expr = re.sub(r"(\d+)\.0\b", r"\1", expr).strip()
    while expr.startswith("(") and expr.endswith(")") and _balanced(expr[1:-1]):
        expr = expr[1:-1].strip()
    return " ".join(expr.split())


def _balanced(expr: str) -> bool:
    depth = 0
    for ch in expr:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def mawps(rec: dict, idx: int) -> dict[str, Any]:
    answer = float(rec["lSolutions"][0])
    expr = rec["lEquations"][0].replace(" ", "")
    expr = expr[2:] if expr.upper().startswith("X=") else ""
    equations = [[expr, _num_text(answer)]] if expr and "X" not in expr.upper() else []
    solution = f"{_tidy(expr)} = {_num_text(answer)}." if equations else ""
    return _item(rec.get("iIndex", idx), rec["sQuestion"], answer, equations=equations, solution=solution)


def math500(rec: dict, idx: int) -> dict[str, Any]:
    return _item(rec.get("unique_id", idx), rec["problem"], rec["answer"], solution=rec.get("solution", ""),
                 meta={"subject": rec.get("subject"), "level": rec.get("level")})


def _options(raw: Any) -> list[list[str]]:
    """ARC/CSQA options as [[label, text]] from a list of {label, text} or HF's {label: [..], text: [..]}."""
    if isinstance(raw, dict):
        return [[str(label), str(text)] for label, text in zip(raw["label"], raw["text"])]
    return [[str(o["label"]), str(o["text"])] for o in raw]


def arc(rec: dict, idx: int) -> dict[str, Any]:
    options = _options(rec.get("options", rec.get("choices")))
    answer = str(rec.get("answer", rec.get("answerKey")))
    if answer.isdigit():  # a few official ARC items use 1-4; map to letters like the options
        options = [["ABCDE"[i], text] for i, (_, text) in enumerate(options)]
        answer = "ABCDE"[int(answer) - 1]
    return _item(rec.get("id", idx), rec["question"], answer, choices=options)


def commonsenseqa(rec: dict, idx: int) -> dict[str, Any]:
    question = rec["question"]
    if isinstance(question, dict):
        return _item(rec["id"], question["stem"], rec["answerKey"], choices=_options(question["choices"]))
    return _item(rec.get("id", idx), question, rec["answerKey"], choices=_options(rec["choices"]))


def strategyqa(rec: dict, idx: int) -> dict[str, Any]:
    if "target_scores" in rec:
        answer = "yes" if rec["target_scores"].get("Yes") else "no"
        rationale = re.sub(r"^(Yes|No)\.\s*", "", rec.get("target", "")).strip()
        return _item(idx, rec["input"], answer, solution=" ".join(rationale.split()))
    answer = "yes" if rec["answer"] in (True, "true", "True", "yes") else "no"
    return _item(rec.get("qid", idx), rec["question"], answer, solution=" ".join(rec.get("facts", [])))


def _asdiv_records(path: Path) -> list[dict]:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise DataError(f"{path}: invalid XML ({err})") from err
    return [{"id": p.get("ID"), **{c.tag: (c.text or "") for c in p}} for p in root.iter("Problem")]


def asdiv(rec: dict, idx: int) -> dict[str, Any] | None:
    number = re.match(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:\(.*\))?\s*$", rec.get("Answer", ""))
    if number is None:
        return None  # textual or multi-valued answers ("3 and 5", "yes") are not numeric items
    formula = rec.get("Formula", "").strip()
    expr, _, result = formula.partition("=")
    single = bool(expr) and re.fullmatch(r"[-+*/().\d\s]+", expr) and re.fullmatch(r"\s*-?[\d.]+\s*", result)
    equations = [[expr.strip(), result.strip()]] if single else []
    return _item(rec["id"], f"{rec['Body'].strip()} {rec['Question'].strip()}", float(number.group(1)),
                 equations=equations, solution=f"{formula}." if formula else "",
                 meta={"type": rec.get("Solution-Type")})


def _read_records(path: Path) -> list[dict]:
    """Records of a jsonl, json (array, or BIG-bench ``examples``) or ASDiv xml file."""
    if not path.exists():
        raise DataError(f"{path}: file not found (is the shared data folder in place? set SLMKIT_DATA)")
    if path.suffix == ".xml":
        return _asdiv_records(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from err
    return data["examples"] if isinstance(data, dict) and "examples" in data else data


CONVERTERS: dict[str, Callable[[dict, int], dict[str, Any] | None]] = {
    "gsm8k": gsm8k, "gsm_hard": gsm_hard, "svamp": svamp, "mawps": mawps, "asdiv": asdiv,
    "math500": math500, "arc": arc, "commonsenseqa": commonsenseqa, "strategyqa": strategyqa,
}


def convert_all(kind: str, records: list[dict], where: str) -> list[dict[str, Any]]:
    """Convert raw records; a record missing a field is a DataError naming it."""
    convert = CONVERTERS[kind]
    items = []
    for i, rec in enumerate(records):
        try:
            item = convert(rec, i)
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DataError(f"{where} record {i + 1}: cannot read as {kind} ({type(err).__name__}: {err})") from err
        if item is not None:
            items.append(item)
    return items


def read_local(kind: str, path: Path) -> list[dict[str, Any]]:
    """Items from a file in its benchmark's own format."""
    return convert_all(kind, _read_records(path), str(path))


def read_hub(kind: str, hub_id: str, config: str | None, split: str) -> list[dict[str, Any]]:
    """Items from a hub data set (``datasets`` and network access needed)."""
    try:
        import datasets
    except ImportError as err:
        raise DataError(f"hub source '{hub_id}' needs the 'datasets' package") from err
    try:
        rows = datasets.load_dataset(hub_id, config, split=split)
    except Exception as err:  # datasets raises many types (connection, missing split, ...)
        raise DataError(f"cannot load hub data set '{hub_id}' ({config}, {split}): {err}") from err
    return convert_all(kind, [dict(r) for r in rows], f"{hub_id}:{split}")


def builtin(task: str, n: int, seed: int, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Items from a built-in generator (``slmkit.data.tasks``): math or sorting."""
    from slmkit.data.tasks import get_task
    from slmkit.data.tasks.math_word import STEP_PATTERN

    items = []
    for i, row in enumerate(get_task(task)(n, seed, **params)):
        lines = [line for line in row["completion"].splitlines() if not line.startswith("####")]
        equations = [[f"{a} {op} {b}", c] for a, op, b, c in STEP_PATTERN.findall(row["completion"])]
        items.append(_item(f"{seed}-{i}", row["prompt"], row["answer"], solution=" ".join(lines),
                           equations=equations if task == "math" else [], meta=row["meta"]))
    return items
