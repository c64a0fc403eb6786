"""LLM judges: any backend grades a response against the reference; verdicts are cached on disk.

A judge is built from a backend spec (``{"kind": "local", "model": ...}``, ``{"kind": "openai", ...}``;
see ``slmkit.backends.make_backend``) plus optional ``name`` and ``prompt`` (a template with
{question}, {gold}, {response}). The backend is created only when some verdict is not cached. The
reply is parsed into correct / incorrect / unparseable (the judge's parse failure). The cache is a
SQLite table keyed by sha256(judge name, decoding settings, prompt), so re-running an evaluation, or
running the cascade after the judge method, costs no judge calls. Greedy decoding: a verdict is a
function of its prompt.

``cascade`` (arXiv 2502.11569): rules first (an extractor pipeline); only where the rules cannot parse
an answer is the judge asked.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path
from typing import Any

DEFAULT_PROMPT = (
    "You are grading a student's answer.\nQuestion: {question}\nReference answer: {gold}\n"
    "Student's response: {response}\nIs the student's final answer equivalent to the reference answer? "
    "Reply with one word: correct or incorrect.\nVerdict:"
)
_VERDICT = re.compile(r"\b(incorrect|correct|wrong|right|yes|no|true|false)\b", re.IGNORECASE)
_POSITIVE = {"correct", "right", "yes", "true"}


def parse_verdict(text: str) -> bool | None:
    """The first verdict word in a reply: True (correct), False (incorrect) or None (unparseable)."""
    found = _VERDICT.search(text)
    return None if found is None else found.group(1).lower() in _POSITIVE


class Judge:
    """A backend turned into a grader with an on-disk verdict cache."""

    def __init__(self, spec: dict[str, Any], cache_path: str | Path, max_new_tokens: int = 8):
        spec = dict(spec)
        self.prompt = spec.pop("prompt", DEFAULT_PROMPT)
        self.name = str(spec.pop("name", "") or _spec_name(spec))
        self.spec = spec
        self.max_new_tokens = max_new_tokens
        self.backend: Any = None
        self.calls = 0
        Path(cache_path).parent.mkdir(parents=True, exist_ok=True)
        self.cache = sqlite3.connect(cache_path, timeout=60)
        self.cache.execute("CREATE TABLE IF NOT EXISTS judge_cache (key TEXT PRIMARY KEY, judge TEXT, "
                           "prompt TEXT, output TEXT)")

    def _key(self, prompt: str) -> str:
        blob = f"{self.name}\0greedy:{self.max_new_tokens}\0{prompt}"
        return hashlib.sha256(blob.encode()).hexdigest()

    def grade(self, questions: list[str], golds: list[str], responses: list[str]) -> list[dict[str, Any]]:
        """One ``{"verdict": bool | None, "output": str, "cached": bool}`` per response, in order."""
        prompts = [self.prompt.format(question=q, gold=g, response=r.strip())
                   for q, g, r in zip(questions, golds, responses)]
        keys = [self._key(p) for p in prompts]
        cached = self._lookup(keys)
        missing = sorted({i for i, k in enumerate(keys) if k not in cached}, key=lambda i: keys[i])
        unique = list({keys[i]: i for i in missing}.values())
        if unique:
            outputs = self._generate([prompts[i] for i in unique])
            with self.cache:
                self.cache.executemany("INSERT OR REPLACE INTO judge_cache VALUES (?,?,?,?)",
                                       [(keys[i], self.name, prompts[i], o) for i, o in zip(unique, outputs)])
            cached.update({keys[i]: o for i, o in zip(unique, outputs)})
        hit = set(keys) - {keys[i] for i in unique}
        return [{"verdict": parse_verdict(cached[k]), "output": cached[k], "cached": k in hit} for k in keys]

    def _lookup(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        unique = list(set(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            rows = self.cache.execute(f"SELECT key, output FROM judge_cache WHERE key IN "
                                      f"({','.join('?' * len(chunk))})", chunk)
            found.update(dict(rows.fetchall()))
        return found

    def _generate(self, prompts: list[str]) -> list[str]:
        from slmkit.backends import make_backend
        from slmkit.models.generate import GenerateConfig

        if self.backend is None:
            self.backend = make_backend(self.spec)
        self.calls += len(prompts)
        cfg = GenerateConfig(max_new_tokens=self.max_new_tokens, temperature=0.0, stop=["\n"])
        return [g.texts[0] for g in self.backend.generate(prompts, cfg)]

    def close(self) -> None:
        self.cache.close()


def _spec_name(spec: dict[str, Any]) -> str:
    """A readable default judge name from its backend spec, e.g. "local:judge-model"."""
    target = spec.get("model") or spec.get("base_url") or "?"
    return f"{spec.get('kind', '?')}:{Path(str(target)).name or target}"
