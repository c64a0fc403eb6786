"""Prompting strategies: direct, chain-of-thought, k-shot and k-shot CoT (as in arXiv 2502.11569).

``direct`` and ``cot`` fill the task's ``direct``/``cot`` template; ``kshot`` puts k ``shot`` exemplars
before the direct query and ``kshot_cot`` k ``shot_cot`` exemplars (with rationales) before it, so the
model imitates the worked format. Exemplars are drawn from the task's few-shot pool with
``random.Random(seed)``: each repeat (seed) gets its own draw and order, and within a repeat all items
share the same exemplars — one shared prefix, which the generator can cache.
"""

from __future__ import annotations

import random
from typing import Any

from slmkit.errors import ConfigError

STRATEGIES: dict[str, tuple[str, str | None]] = {
    "direct": ("direct", None),
    "cot": ("cot", None),
    "kshot": ("direct", "shot"),
    "kshot_cot": ("direct", "shot_cot"),
}
"""strategy -> (query template, exemplar template or None)."""

SEPARATOR = "\n\n"


def render(template: str, item: dict[str, Any]) -> str:
    """Fill a template with an item's fields ({question}, {choices}, {answer}, {solution})."""
    choices = "\n".join(f"{label}. {text}" for label, text in item.get("choices", []))
    solution = item.get("solution", "").strip()
    return template.format(question=item["question"], choices=choices, answer=item["answer"],
                           solution=solution + " " if solution else "")


def exemplars(pool: list[dict], k: int, seed: int, need_solution: bool) -> list[dict]:
    """k exemplars drawn (and ordered) by ``seed``; CoT exemplars prefer items that have a rationale."""
    candidates = [p for p in pool if p.get("solution")] if need_solution else pool
    candidates = candidates or pool
    if k > len(candidates):
        raise ConfigError(f"k_shot={k} but the few-shot pool has only {len(candidates)} items")
    return random.Random(seed).sample(candidates, k)


def build_prompts(spec: Any, items: list[dict], pool: list[dict], strategy: str, k: int,
                  seed: int) -> list[str]:
    """One prompt per item for ``strategy`` (exemplars fixed per seed)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{strategy}' (known: {', '.join(STRATEGIES)})")
    query, shot = STRATEGIES[strategy]
    query_t = getattr(spec.templates, query)
    if shot is None:
        return [render(query_t, item) for item in items]
    if not pool:
        raise ConfigError(f"task '{spec.name}' has no few-shot pool for strategy '{strategy}'")
    shot_t = getattr(spec.templates, shot)
    prefix = SEPARATOR.join(render(shot_t, ex).rstrip("\n") for ex in
                            exemplars(pool, k, seed, need_solution=shot == "shot_cot"))
    return [prefix + SEPARATOR + render(query_t, item) for item in items]


def token_budget(spec: Any, strategy: str, override: int = 0) -> int:
    """Generation budget: the override if set, else the task's budget for direct or CoT answers."""
    if override:
        return override
    return spec.max_new_tokens_cot if strategy in ("cot", "kshot_cot") else spec.max_new_tokens_direct
