"""A mixture of built-in tasks: "general" data made of several domains at once.

``params: {tasks: {math: {weight: 2, params: {max_steps: 1}}, sorting: {params: {length: 4}}}}`` draws
``n`` rows split between the tasks in proportion to their weights (default 1), each task generated with its
own params and seed, then shuffled together. MediPhi's base model is trained on such general data before
domain experts are made from it. ``documents`` mixes the documents of the tasks that have them.
In memory, from the seed; nothing is read or written.
"""

from __future__ import annotations

import random
from typing import Any


def _shares(n: int, tasks: dict[str, dict[str, Any]]) -> dict[str, int]:
    """``n`` split by weight with the largest-remainder rule (the shares always sum to ``n``)."""
    if not isinstance(tasks, dict) or not tasks:
        raise ValueError("tasks must be a mapping of task name -> {weight, params}")
    weights = {}
    for name, spec in tasks.items():
        if name == "mix":
            raise ValueError("a mix cannot contain itself")
        if not isinstance(spec, dict) or set(spec) - {"weight", "params"}:
            raise ValueError(f"tasks.{name} must be a mapping with 'weight' and/or 'params'")
        weights[name] = float(spec.get("weight", 1.0))
        if weights[name] <= 0:
            raise ValueError(f"tasks.{name}.weight must be > 0")
    total = sum(weights.values())
    exact = {k: n * w / total for k, w in weights.items()}
    shares = {k: int(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: exact[k] - shares[k], reverse=True)[:n - sum(shares.values())]:
        shares[k] += 1
    return shares


def generate(n: int, seed: int, *, tasks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``n`` rows from the named tasks, by weight, shuffled (deterministic in ``seed``)."""
    from slmkit.data.tasks import get_task

    rows: list[dict[str, Any]] = []
    for i, (name, count) in enumerate(_shares(n, tasks).items()):
        rows += get_task(name)(count, seed + i, **tasks[name].get("params", {}))
    random.Random(seed).shuffle(rows)
    return rows


def documents(n: int, seed: int, *, tasks: dict[str, dict[str, Any]],
              exclude: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """``n`` documents from the tasks that define them, by weight, shuffled."""
    from slmkit.data.tasks import TASKS, get_documents

    with_docs = {}
    for name, spec in tasks.items():
        try:
            get_documents(name)
            with_docs[name] = spec
        except KeyError:
            if name not in TASKS:
                raise
    if not with_docs:
        raise ValueError("none of the mixed tasks defines documents")
    rows: list[dict[str, Any]] = []
    for i, (name, count) in enumerate(_shares(n, with_docs).items()):
        rows += get_documents(name)(count, seed + i, exclude=exclude, **with_docs[name].get("params", {}))
    random.Random(seed).shuffle(rows)
    return rows
