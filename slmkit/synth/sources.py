"""Evaluation texts that synthetic training data must not overlap (decontamination sources).

``SOURCES`` maps a name to a function returning the question texts of one evaluation set: the benchmark
files in the shared data folder (read in place: GSM8K test, GSM-Hard, SVAMP, ASDiv, MultiArith, AddSub,
MATH-500, ARC-Challenge, CommonsenseQA, StrategyQA) and the test splits of the built-in generators as the
``data`` stage cuts them with its defaults (seed 0, the first 200 rows). ``"eval"`` names all of them:
the evaluation registry, so that adding an evaluation set here protects every synthetic pipeline.
Files given by path (a ``test_file`` wired from a ``data`` stage, any jsonl/csv of rows) are read too.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from slmkit.errors import ConfigError


def _shared(*parts: str) -> Path:
    from slmkit.data.shared import shared_path

    path = shared_path(*parts)
    if not path.exists():
        raise FileNotFoundError(str(path))
    return path


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _gsm8k() -> list[str]:
    return [r["question"] for r in _jsonl(_shared("gsm8k", "test.jsonl"))]


def _gsm_hard() -> list[str]:
    return [r["input"] for r in _jsonl(_shared("gsm_hard", "gsmhardv2.jsonl"))]


def _svamp() -> list[str]:
    data = json.loads(_shared("svamp", "SVAMP.json").read_text(encoding="utf-8"))
    return [f"{r['Body']} {r['Question']}" for r in data]


def _asdiv() -> list[str]:
    root = ET.parse(_shared("asdiv", "ASDiv.xml")).getroot()
    return [f"{p.findtext('Body', '')} {p.findtext('Question', '')}" for p in root.iter("Problem")]


def _mawps(name: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        data = json.loads(_shared("mawps_multiarith_addsub", f"{name}.json").read_text(encoding="utf-8"))
        return [r["sQuestion"].strip() for r in data]
    return load


def _math500() -> list[str]:
    return [r["problem"] for r in _jsonl(_shared("math500", "test.jsonl"))]


def _arc() -> list[str]:
    return [r["question"] for r in _jsonl(_shared("arc_challenge", "arc_challenge_test.jsonl"))]


def _csqa() -> list[str]:
    return [r["question"]["stem"] for r in _jsonl(_shared("commonsenseqa", "dev_rand_split.jsonl"))]


def _strategyqa() -> list[str]:
    data = json.loads(_shared("strategyqa", "task.json").read_text(encoding="utf-8"))
    return [r["input"] for r in data["examples"]]


def _builtin(task: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        from slmkit.data.stage import Config, make_splits

        return [r["prompt"] for r in make_splits(Config(task=task))["test"]]
    return load


SOURCES: dict[str, Callable[[], list[str]]] = {
    "gsm8k": _gsm8k, "gsm_hard": _gsm_hard, "svamp": _svamp, "asdiv": _asdiv,
    "multiarith": _mawps("MultiArith"), "addsub": _mawps("AddSub"), "math500": _math500,
    "arc_challenge": _arc, "commonsenseqa": _csqa, "strategyqa": _strategyqa,
    "math": _builtin("math"), "sorting": _builtin("sorting"),
}


def eval_texts(names: list[str], files: list[str] = ()) -> tuple[list[str], dict[str, int], list[str]]:
    """(texts, rows per source, sources whose files are absent); ``"eval"`` expands to every source."""
    from slmkit.data.loaders import read_rows

    expanded: list[str] = []
    for name in names:
        if name == "eval":
            expanded += [s for s in SOURCES if s not in expanded]
        elif name not in SOURCES:
            raise ConfigError(f"decontaminate: unknown source '{name}' (known: eval, {', '.join(SOURCES)})")
        elif name not in expanded:
            expanded.append(name)
    texts: list[str] = []
    sizes: dict[str, int] = {}
    missing: list[str] = []
    for name in expanded:
        try:
            found = SOURCES[name]()
        except FileNotFoundError:
            missing.append(name)
            continue
        sizes[name] = len(found)
        texts += found
    for file in files:
        found = [r["prompt"] for r in read_rows(file)]
        sizes[str(file)] = len(found)
        texts += found
    return texts, sizes, missing
