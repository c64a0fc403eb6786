"""MediFlow-style synthetic instructions (MediPhi, Corbeil et al. 2025, arXiv 2505.10717, section 3.3).

MediFlow crosses clinical NLP tasks with fine-grained document types and output formats, many of them
JSON. Here each item is one (task, document type, output format) cell of the taxonomy in
``mediflow_taxonomy.yaml`` (cells are shuffled with the seed and cycled when more items than cells are
asked; a repeated cell samples with another seed). For an item, the instruction writer drafts a
fictional document of that type and an instruction for the task; the responder answers in the format.
A JSON answer must parse and follow the task's JSON schema (jsonschema, Draft 2020-12); an invalid
answer is asked again, with the validation error in the prompt and a new sampling seed, at most
``max_retries`` times. With ``min_score`` > 0 a judge grades the answer 1-5 and low grades are dropped.
Every failed attempt and every dropped item is counted by reason (``responder:invalid_json``,
``responder:schema_required``, ``judge:low_score``, ...). Rows: prompt = instruction + document + format
requirements, completion = the answer (JSON re-serialised compactly), provenance in ``meta.synth``.
Reads the packaged taxonomy; writes nothing itself (see ``synth/stage.py``).
"""

from __future__ import annotations

import json
import random
import re
from functools import lru_cache
from itertools import product
from pathlib import Path
from typing import Any

from slmkit.errors import ConfigError
from slmkit.synth.engine import Teacher, text_hash
from slmkit.synth.roles import Reject, Role, read, render

TAXONOMY = Path(__file__).with_name("mediflow_taxonomy.yaml")


@lru_cache(maxsize=1)
def taxonomy() -> dict[str, Any]:
    """Tasks (description + JSON schema), document types and output formats."""
    import yaml

    return yaml.safe_load(TAXONOMY.read_text(encoding="utf-8"))


def _select(asked: list[str], known: list[str], what: str) -> list[str]:
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise ConfigError(f"synth (mediflow): unknown {what} {unknown} (known: {', '.join(known)})")
    return list(asked) or list(known)


def make_items(cfg: Any) -> list[tuple[str, dict[str, Any]]]:
    """``cfg.n`` cells of tasks x document types x formats, shuffled with the seed and cycled if needed."""
    tax = taxonomy()
    cells = list(product(_select(cfg.tasks, list(tax["tasks"]), "tasks"),
                         _select(cfg.document_types, tax["document_types"], "document_types"),
                         _select(cfg.output_formats, list(tax["output_formats"]), "output_formats")))
    random.Random(cfg.seed).shuffle(cells)
    items = []
    for index in range(cfg.n):
        task, doc_type, fmt = cells[index % len(cells)]
        variant = index // len(cells)
        slug = re.sub(r"[^a-z0-9]+", "-", doc_type.lower()).strip("-")
        item_id = f"{index:06d}-{task}-{slug}-{fmt}-v{variant}"
        items.append((item_id, {"id": item_id, "task": task, "document_type": doc_type, "output_format": fmt,
                                "variant": variant}))
    return items


def format_requirements(task: str, fmt: str) -> str:
    """What the answer must look like: the format sentence, plus the JSON schema for JSON answers."""
    tax = taxonomy()
    text = tax["output_formats"][fmt]
    if fmt == "json":
        text += "\n" + json.dumps(tax["tasks"][task]["schema"], indent=1)
    return text


def process(item: dict[str, Any], cfg: Any, teacher: Teacher, roles: dict[str, Role]) -> dict[str, Any]:
    """Write, answer (with bounded retries) and optionally judge one instruction.

    Returns ``{"rows", "rejects", "candidates": 1, "attempts"}``; a reject marked ``final`` dropped the item,
    the others are failed attempts that a retry recovered from (or that led to ``retries_exhausted``).
    """
    call = _Call(item, cfg, teacher, roles)
    text = call.ask("instruction_writer")
    try:
        call.context.update(read(roles["instruction_writer"], text, call.context))
    except Reject as rej:
        return call.result(rej, text)
    answer, text = call.answer()
    if answer is None:
        return call.result(Reject("responder:retries_exhausted"), text)
    fmt = item["output_format"]
    completion = json.dumps(answer, ensure_ascii=False) if fmt == "json" else answer
    if cfg.min_score:
        call.context["answer"] = completion
        judged = call.ask("judge")
        try:
            score = read(roles["judge"], judged, call.context)
        except Reject as rej:
            return call.result(rej, judged)
        if score < cfg.min_score:
            return call.result(Reject("judge:low_score", str(score)), judged)
    ctx = call.context
    used = ["instruction_writer", "responder"] + (["judge"] if cfg.min_score else [])
    provenance = {"pipeline": "mediflow", "seed_id": item["id"], "round": 0, "attempts": call.attempts,
                  "roles": {r: teacher.backend(r).name for r in used}, "prompt_hashes": call.hashes,
                  "rule_based": any(getattr(teacher.backend(r), "rule_based", False) for r in used)}
    row = {"prompt": f"{ctx['instruction']}\n\nDocument:\n{ctx['document']}\n\n{ctx['format_requirements']}",
           "completion": completion, "answer": "",
           "meta": {"task": item["task"], "document_type": item["document_type"], "output_format": fmt,
                    "source": "synth", "synth": provenance}}
    return call.result(None, "", row)


class _Call:
    """The prompts, answers and rejections of one item."""

    def __init__(self, item: dict[str, Any], cfg: Any, teacher: Teacher, roles: dict[str, Role]):
        tax = taxonomy()
        task, fmt = item["task"], item["output_format"]
        self.item, self.cfg, self.teacher, self.roles = item, cfg, teacher, roles
        self.context: dict[str, Any] = {
            "task": task, "task_description": tax["tasks"][task]["description"],
            "document_type": item["document_type"], "output_format": fmt, "schema": tax["tasks"][task]["schema"],
            "format_requirements": format_requirements(task, fmt), "feedback": ""}
        self.rejects: list[dict[str, Any]] = []
        self.hashes: dict[str, str] = {}
        self.attempts = 0

    def ask(self, role: str, attempt: int = 0) -> str:
        from slmkit.models.generate import GenerateConfig

        prompt = render(self.roles[role], self.context)
        self.hashes[f"{role}_{attempt}" if attempt else role] = text_hash(prompt)
        # A repeated cell (variant) and every retry sample with their own seed: same prompt, new answer.
        gen = GenerateConfig(max_new_tokens=self.cfg.max_new_tokens, temperature=self.cfg.temperature,
                             top_p=self.cfg.top_p, n=1, seed=self.cfg.seed + 1000 * self.item["variant"] + attempt,
                             batch_size=self.cfg.batch_size, prompt_format=self.cfg.prompt_format)
        return self.teacher.ask(role, prompt, gen)[0]

    def answer(self) -> tuple[Any, str]:
        """The first valid responder answer within ``max_retries`` retries (None if none), and the last text."""
        text = ""
        for attempt in range(self.cfg.max_retries + 1):
            self.attempts = attempt + 1
            text = self.ask("responder", attempt)
            try:
                return read(self.roles["responder"], text, self.context), text
            except Reject as rej:
                self.rejects.append({"reason": rej.reason, "detail": rej.detail[:200], "text": text[:300],
                                     "attempt": attempt})
                self.context["feedback"] = (f"\n\nA previous answer was rejected ({rej.reason.split(':', 1)[1]}: "
                                            f"{rej.detail[:200]}). Follow the required format exactly.")
        return None, text

    def result(self, rej: Reject | None, text: str, row: dict[str, Any] | None = None) -> dict[str, Any]:
        if rej is not None:
            self.rejects.append({"reason": rej.reason, "detail": rej.detail[:200], "text": text[:300], "final": True})
        return {"rows": [row] if row else [], "rejects": self.rejects, "candidates": 1, "attempts": self.attempts}


def extra_stats(items: list[tuple[str, dict[str, Any]]], records: list[dict], rows: list[dict]) -> dict[str, Any]:
    """Rows per task and output format, mean responder attempts, share of items dropped after all retries."""
    from collections import Counter

    exhausted = sum(any(x["reason"] == "responder:retries_exhausted" for x in r["rejects"]) for r in records)
    return {"mean_attempts": round(sum(r["attempts"] for r in records) / max(1, len(records)), 3),
            "retries_exhausted_rate": round(exhausted / max(1, len(records)), 4),
            "rows_by_task": dict(sorted(Counter(r["meta"]["task"] for r in rows).items())),
            "rows_by_format": dict(sorted(Counter(r["meta"]["output_format"] for r in rows).items()))}
